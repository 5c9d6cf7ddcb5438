package agent

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
)

// Log files that Spark processes write on the node themselves, shipped when
// the cluster delivers its logs (Assignment.LogDelivery): on a worker, each
// executor's stdout and stderr under the worker's work directory
// (work/<app-id>/<executor-id>/), and on the driver the Spark event log of
// each application (spark.eventLog.dir, set by the agent). A shipper tails
// them into the log spool, so they reach the control plane like process
// output, resent until acknowledged.

// eventLogDir is the driver's Spark event log directory, under the node's
// Spark directory.
const eventLogDir = "eventlog"

// fileShipInterval is how often the files are read for new bytes.
const fileShipInterval = 2 * time.Second

// executorStream names the stream of a file under a worker's work
// directory (rel is slash-separated): executor/<app>/<executor>/stdout. It
// is pure.
func executorStream(rel string) (string, bool) {
	segs := strings.Split(rel, "/")
	if len(segs) != 3 || (segs[2] != "stdout" && segs[2] != "stderr") {
		return "", false
	}
	if !strings.HasPrefix(segs[0], "app-") || !validStream(rel) {
		return "", false
	}
	return "executor/" + rel, true
}

// eventLogStream names the stream of a file in the driver's event log
// directory: eventlog/<cluster-id>_<host>/<app-id>/eventlog, as Databricks
// lays event logs out. A running application's file ends in .inprogress
// and is renamed when it ends: both are the same stream. It is pure.
func eventLogStream(clusterID, host, rel string) (string, bool) {
	if strings.Contains(rel, "/") {
		return "", false // rolling event logs (directories) are not shipped
	}
	app := strings.TrimSuffix(rel, ".inprogress")
	if !strings.HasPrefix(app, "app-") && !strings.HasPrefix(app, "local-") {
		return "", false
	}
	name := "eventlog/" + unsafeName.ReplaceAllString(clusterID+"_"+host, "_") + "/" + app + "/eventlog"
	if !validStream(name) {
		return "", false
	}
	return name, true
}

// fileShipper copies what is new in the node's Spark log files to the
// spool. Its offsets are per stream; reset forgets them with the spool.
type fileShipper struct {
	spool *logSpool

	mu      sync.Mutex
	offsets map[string]int64
	// What the current assignment ships: set at its start, kept for the
	// last pass when it is cleaned.
	on        bool
	role      string
	clusterID string
	host      string
	sparkDir  string
}

func newFileShipper(spool *logSpool) *fileShipper {
	return &fileShipper{spool: spool, offsets: map[string]int64{}}
}

// start ships the files of an assignment that delivers its logs, until
// ctx ends (the cleaning of the node makes the last pass).
func (f *fileShipper) start(ctx context.Context, asg wire.Assignment, host, sparkDir string) {
	f.mu.Lock()
	f.on, f.role, f.clusterID, f.host, f.sparkDir = asg.LogDelivery, asg.Role, asg.ClusterID, host, sparkDir
	f.mu.Unlock()
	if !asg.LogDelivery {
		return
	}
	go func() {
		t := time.NewTicker(fileShipInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f.pass()
			}
		}
	}()
}

// pass copies what is new in every file.
func (f *fileShipper) pass() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.on {
		return
	}
	if f.role == wire.RoleDriver {
		f.walk(filepath.Join(f.sparkDir, eventLogDir), func(rel string) (string, bool) {
			return eventLogStream(f.clusterID, f.host, rel)
		})
	} else {
		f.walk(filepath.Join(f.sparkDir, "work"), executorStream)
	}
}

// last makes the final pass of an assignment being cleaned (its processes
// stopped) and stops shipping.
func (f *fileShipper) last() {
	f.pass()
	f.mu.Lock()
	f.on = false
	f.mu.Unlock()
}

// reset forgets the offsets (the spool was reset).
func (f *fileShipper) reset() {
	f.mu.Lock()
	f.offsets = map[string]int64{}
	f.on = false
	f.mu.Unlock()
}

func (f *fileShipper) walk(root string, name func(rel string) (string, bool)) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil
		}
		stream, ok := name(filepath.ToSlash(rel))
		if !ok {
			return nil
		}
		f.copyNew(p, stream)
		return nil
	})
}

// copyNew appends a file's bytes past the stream's offset to the spool.
func (f *fileShipper) copyNew(p, stream string) {
	fh, err := os.Open(p)
	if err != nil {
		return
	}
	defer fh.Close()
	off := f.offsets[stream]
	buf := make([]byte, 256<<10)
	for {
		n, err := fh.ReadAt(buf, off)
		if n > 0 {
			if werr := f.spool.write(stream, buf[:n]); werr != nil {
				return
			}
			off += int64(n)
			f.offsets[stream] = off
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			return
		}
	}
}

// drainLogs waits until the control plane has acknowledged every stream,
// at most for timeout (the node is about to forget its spool).
func (a *Agent) drainLogs(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	a.notify()
	for a.logs.hasPending() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// finalReport sends what the spool still holds after the agent's loops
// have stopped (the instance is being deleted), for at most timeout.
func (a *Agent) finalReport(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for a.logs.hasPending() && ctx.Err() == nil {
		rep := wire.Report{Status: a.node.status(), Logs: a.logs.pending(maxReportLogBytes)}
		rep.Status.StartedMillis = a.started.UnixMilli()
		rep.Status.Version = Version
		var resp wire.ReportResponse
		if err := a.post(ctx, wire.PathReport, rep, &resp); err != nil {
			a.log.Debug("final report failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		a.logs.ack(resp.Logs)
	}
}

// withEventLog returns the driver's Spark configuration with event logs
// written to dir (made here), unless spark_conf chose otherwise: one plain
// JSON-lines file per application, as Databricks delivers them (Spark 4
// otherwise rolls them into directories and compresses them).
func withEventLog(conf map[string]string, dir string) map[string]string {
	out := make(map[string]string, len(conf)+4)
	for k, v := range conf {
		out[k] = v
	}
	for k, v := range map[string]string{"spark.eventLog.enabled": "true", "spark.eventLog.rolling.enabled": "false",
		"spark.eventLog.compress": "false"} {
		if _, set := out[k]; !set {
			out[k] = v
		}
	}
	if _, set := out["spark.eventLog.dir"]; !set {
		os.MkdirAll(dir, 0o700)
		out["spark.eventLog.dir"] = "file://" + dir
	}
	return out
}
