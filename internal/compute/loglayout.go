package compute

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
)

// Cluster log delivery (LM2): what the agents stream to the control plane
// is copied to the cluster's cluster_log_conf destination in Databricks'
// layout. This file holds the pure part: the destination's validation, the
// layout and the hourly rotation names.

// clusterLogConf is Databricks' ClusterLogConf: one destination.
type clusterLogConf struct {
	Dbfs    *struct{ Destination string } `json:"dbfs"`
	S3      json.RawMessage               `json:"s3"`
	Volumes json.RawMessage               `json:"volumes"`
}

// logDestination validates a cluster_log_conf and returns its DBFS
// destination as a canonical absolute DBFS path ("/cluster-logs"), or ""
// when the spec has none. It is pure.
func logDestination(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
		return "", nil
	}
	var conf clusterLogConf
	if err := json.Unmarshal(raw, &conf); err != nil {
		return "", api.InvalidParam("cluster_log_conf is not a ClusterLogConf object: %v.", err)
	}
	set := 0
	for _, ok := range []bool{conf.Dbfs != nil, len(conf.S3) > 0 && string(conf.S3) != "null", len(conf.Volumes) > 0 && string(conf.Volumes) != "null"} {
		if ok {
			set++
		}
	}
	if set > 1 {
		return "", api.InvalidParam("cluster_log_conf: only one destination can be specified for one cluster.")
	}
	if conf.Dbfs == nil {
		kind := "s3"
		if set == 0 {
			return "", api.InvalidParam(`cluster_log_conf must name a destination, such as {"dbfs":{"destination":"dbfs:/cluster-logs"}}.`)
		}
		if len(conf.Volumes) > 0 {
			kind = "volumes"
		}
		return "", api.InvalidParam(`cluster_log_conf: %s destinations are not supported by this workspace; deliver to DBFS instead, such as {"dbfs":{"destination":"dbfs:/cluster-logs"}}.`, kind)
	}
	d := conf.Dbfs.Destination
	if d == "" {
		return "", api.MissingField("cluster_log_conf.dbfs.destination")
	}
	rest, _ := strings.CutPrefix(d, "dbfs:")
	if !strings.HasPrefix(rest, "/") {
		return "", api.InvalidParam("cluster_log_conf.dbfs.destination must be a DBFS path such as dbfs:/cluster-logs, got %q.", d)
	}
	p, err := fspath.Clean(rest)
	if err != nil {
		return "", api.InvalidParam("cluster_log_conf.dbfs.destination %q: %v", d, err)
	}
	if p == "/" {
		return "", api.InvalidParam("cluster_log_conf.dbfs.destination may not be the DBFS root.")
	}
	return p, nil
}

// deliveredPath maps a stream an agent sends (named as kept by the control
// plane) to its path under <destination>/<cluster-id>/, and reports whether
// the file rotates hourly. Streams outside Databricks' layout (task output,
// the Spark worker daemon's own output) are not delivered. It is pure.
func deliveredPath(stream string) (rel string, rotates, ok bool) {
	segs := strings.Split(stream, "/")
	switch {
	case stream == "driver/stdout" || stream == "driver/stderr":
		return stream, false, true
	case stream == "driver/log4j-active.log":
		return stream, true, true
	case segs[0] == "executor" && len(segs) == 4 && (segs[3] == "stdout" || segs[3] == "stderr"):
		return stream, false, true
	case segs[0] == "eventlog" && len(segs) == 4 && strings.HasPrefix(segs[3], "eventlog"):
		return stream, false, true
	case segs[0] == "init_scripts" && len(segs) == 3 &&
		(strings.HasSuffix(segs[2], ".stdout.log") || strings.HasSuffix(segs[2], ".stderr.log")):
		return stream, false, true
	}
	return "", false, false
}

// logHour is the hour a rotating file's bytes belong to: when they were
// delivered, in UTC.
func logHour(t time.Time) string { return t.UTC().Format("2006-01-02-15") }

// rotatedPath is where an hour of a rotating file goes: for
// driver/log4j-active.log, driver/log4j-YYYY-MM-DD-HH.log.gz.
func rotatedPath(rel, hour string) string {
	dir, base := "", rel
	if i := strings.LastIndex(rel, "/"); i >= 0 {
		dir, base = rel[:i+1], rel[i+1:]
	}
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".log"), "-active")
	return dir + base + "-" + hour + ".log.gz"
}

// deliveredFile is the delivery cursor of one destination file: what the
// file holds, and how far each stream that feeds it (one per instance that
// had the role: a restarted driver starts a second stream) has been copied.
type deliveredFile struct {
	// Size is what the destination file holds (for a rotating file, the
	// active file).
	Size int64 `json:"size"`
	// Hour is the hour the active file of a rotating file holds.
	Hour    string         `json:"hour,omitempty"`
	Sources []sourceCursor `json:"sources,omitempty"`
}

type sourceCursor struct {
	Instance string `json:"instance"`
	Offset   int64  `json:"offset"`
}

// source is one kept stream that feeds a destination file.
type source struct {
	Instance string
	Size     int64
	ModTime  int64
}

// addSources adds the streams the cursor does not know yet, in the order
// they began (oldest first), and returns the cursor's sources with their
// sizes. It is pure.
func (f *deliveredFile) addSources(found []source) []source {
	known := map[string]bool{}
	for _, sc := range f.Sources {
		known[sc.Instance] = true
	}
	var fresh []source
	for _, s := range found {
		if !known[s.Instance] {
			fresh = append(fresh, s)
		}
	}
	sort.Slice(fresh, func(i, j int) bool {
		if fresh[i].ModTime != fresh[j].ModTime {
			return fresh[i].ModTime < fresh[j].ModTime
		}
		return fresh[i].Instance < fresh[j].Instance
	})
	for _, s := range fresh {
		f.Sources = append(f.Sources, sourceCursor{Instance: s.Instance})
	}
	size := map[string]int64{}
	for _, s := range found {
		size[s.Instance] = s.Size
	}
	out := make([]source, len(f.Sources))
	for i, sc := range f.Sources {
		out[i] = source{Instance: sc.Instance, Size: size[sc.Instance]}
	}
	return out
}
