package local

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// unmountUnder unmounts whatever is mounted inside dir (an agent's elastic
// disk volumes, when the agent was killed before it could release them),
// deepest first, so that the instance directory can be removed and no
// volume outlives its instance.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(f[4])
		if strings.HasPrefix(p, abs+string(filepath.Separator)) {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if syscall.Unmount(p, 0) != nil {
			syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
}
