package agent

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// cpuTimes are the host's CPU counters (jiffies) from the first line of
// /proc/stat.
type cpuTimes struct {
	busy, total uint64
}

// parseCPUTimes reads the aggregate "cpu" line of /proc/stat. Idle and
// iowait count as not busy.
func parseCPUTimes(stat []byte) (cpuTimes, bool) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, false
	}
	var t cpuTimes
	for i, s := range f[1:] {
		// guest and guest_nice (fields 9, 10) are already counted in
		// user and nice.
		if i >= 8 {
			break
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, false
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, true
}

// cpuUsage is the busy share of the CPUs between two readings.
func cpuUsage(prev, cur cpuTimes) float64 {
	if cur.total <= prev.total || cur.busy < prev.busy {
		return 0
	}
	u := float64(cur.busy-prev.busy) / float64(cur.total-prev.total)
	return min(max(u, 0), 1)
}

// parseNetDev sums the received and transmitted bytes of every interface
// in /proc/net/dev but loopback.
func parseNetDev(b []byte) (rx, tx int64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the two header lines
		}
		if strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, _ := strconv.ParseInt(f[0], 10, 64)
		t, _ := strconv.ParseInt(f[8], 10, 64)
		rx += r
		tx += t
	}
	return rx, tx
}

// parseMeminfo returns MemTotal and MemAvailable in bytes.
func parseMeminfo(b []byte) (total, available int64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = kb * 1024
		case "MemAvailable:":
			available = kb * 1024
		}
	}
	return total, available
}

// hostStats adds the host-wide figures to m: CPU use since the previous
// call, memory total, disk size, Spark's scratch space and network
// counters. Only the report loop calls it.
func (a *Agent) hostStats(m *wire.Metrics) {
	m.Cores = a.cfg.Cores
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		if cur, ok := parseCPUTimes(b); ok {
			if a.cpuPrev.total > 0 {
				m.CPUUsage = cpuUsage(a.cpuPrev, cur)
			}
			a.cpuPrev = cur
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemoryTotalBytes, _ = parseMeminfo(b)
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(a.dir, &fs) == nil {
		m.DiskTotalBytes = int64(fs.Blocks) * int64(fs.Bsize)
	}
	m.ScratchUsedBytes = dirSize(filepath.Join(a.node.sparkDir(), "local")) + dirSize(filepath.Join(a.node.sparkDir(), "work"))
	if b, err := os.ReadFile("/proc/net/dev"); err == nil {
		m.NetReceiveBytes, m.NetTransmitBytes = parseNetDev(b)
	}
}
