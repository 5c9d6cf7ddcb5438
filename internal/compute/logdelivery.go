package compute

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/store"
)

// LogSink is where cluster logs are delivered (the region's DBFS).
type LogSink interface {
	// AppendAt appends data to a file that holds at bytes written by the
	// caller; it is idempotent for a repeated call (see dbfs.AppendAt), and
	// at 0 replaces the file.
	AppendAt(ctx context.Context, path string, at int64, data []byte) (int64, error)
	WriteFile(ctx context.Context, path string, data []byte) error
	ReadFile(ctx context.Context, path string, max int64) ([]byte, error)
}

// kindLogDelivery holds, per cluster, where its logs go, the delivery
// cursors and the status clusters/get reports. It belongs to the region
// that delivers (the cursors describe this region's kept streams), so it
// never replicates.
const kindLogDelivery = "compute.log_delivery" // cluster id -> logDelivery

func init() { store.RegisterLocal(kindLogDelivery) }

type logDelivery struct {
	// Destination is the cluster's directory: <destination>/<cluster-id>.
	Destination   string                    `json:"destination"`
	LastAttempted int64                     `json:"last_attempted,omitempty"`
	LastException string                    `json:"last_exception,omitempty"`
	Files         map[string]*deliveredFile `json:"files,omitempty"`
}

// LogSyncStatus is Databricks' cluster_log_status.
type LogSyncStatus struct {
	LastAttempted int64  `json:"last_attempted,omitempty"`
	LastException string `json:"last_exception,omitempty"`
}

// Delivery bounds.
const (
	// defaultLogDeliveryEvery is how often new log bytes are copied (the
	// goal is at most 30 s behind; Databricks delivers every 5 minutes).
	defaultLogDeliveryEvery = 10 * time.Second
	// logDeliveryChunk bounds one append.
	logDeliveryChunk = 4 << 20
	// logDeliveryAfterTermination is how long a terminated cluster's kept
	// streams are still watched for the last bytes its agents flush.
	logDeliveryAfterTermination = time.Hour
	// logStatusEvery refreshes last_attempted of a cluster with nothing new.
	logStatusEvery = time.Minute
	// maxRotatedRead bounds an hour of a rotating file.
	maxRotatedRead = maxLogStream
)

// runLogDelivery copies the clusters' kept log streams to their
// cluster_log_conf destinations until ctx ends. It runs beside the
// reconciler, so only in the region that leads.
func (s *Service) runLogDelivery(ctx context.Context) {
	if s.LogSink == nil || s.LogDir == "" {
		return
	}
	every := s.LogDeliveryEvery
	if every <= 0 {
		every = defaultLogDeliveryEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.deliverLogs(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("cluster log delivery", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deliverLogs runs one delivery round over every cluster with a log
// destination that runs or terminated recently.
func (s *Service) deliverLogs(ctx context.Context) error {
	now := s.Now()
	type target struct {
		id, dest string
	}
	var targets []target
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindCluster, "", func(_ string, c Cluster) error {
			if len(c.Spec.ClusterLogConf) == 0 {
				return nil
			}
			if !c.active() && c.State != Terminating && now.UnixMilli()-c.TerminatedTime > logDeliveryAfterTermination.Milliseconds() {
				return nil
			}
			dest, err := logDestination(c.Spec.ClusterLogConf)
			if err != nil || dest == "" {
				return nil
			}
			targets = append(targets, target{c.ID, dest})
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, tg := range targets {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := s.deliverCluster(ctx, tg.id, path.Join(tg.dest, tg.id), now); err != nil && ctx.Err() == nil {
			s.Log.Warn("deliver cluster logs", "cluster_id", tg.id, "err", err)
		}
	}
	return nil
}

// keptStreams lists the delivered streams the control plane keeps for a
// cluster, by destination path.
func (s *Service) keptStreams(clusterID string) (map[string][]source, map[string]bool, error) {
	root := filepath.Join(s.LogDir, clusterID)
	out := map[string][]source{}
	rotates := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		instance, stream, ok := strings.Cut(filepath.ToSlash(rel), "/")
		if !ok {
			return nil
		}
		dest, rot, ok := deliveredPath(stream)
		if !ok {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		out[dest] = append(out[dest], source{Instance: instance, Size: info.Size(), ModTime: info.ModTime().UnixNano()})
		rotates[dest] = rot
		return nil
	})
	return out, rotates, err
}

// deliverCluster copies what is new in a cluster's kept streams to dir.
// Every append is recorded in the cluster's cursors before the next one, and
// appends are idempotent, so a control plane killed at any point resumes
// without losing or repeating a byte.
func (s *Service) deliverCluster(ctx context.Context, clusterID, dir string, now time.Time) error {
	var st logDelivery
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		st, err = store.Get[logDelivery](tx, kindLogDelivery, clusterID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if st.Destination != dir {
		// A new destination (or the first): deliver everything there.
		st = logDelivery{Destination: dir, LastAttempted: st.LastAttempted, LastException: st.LastException}
	}
	if st.Files == nil {
		st.Files = map[string]*deliveredFile{}
	}
	streams, rotates, err := s.keptStreams(clusterID)
	if err != nil {
		return err
	}
	save := func() error {
		_, err := s.Store.Update(ctx, func(tx store.Tx) error {
			return store.Put(tx, kindLogDelivery, clusterID, st)
		})
		return err
	}
	hour := logHour(now)
	worked := false
	var failure error
	rels := make([]string, 0, len(streams))
	for rel := range streams {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		f := st.Files[rel]
		if f == nil {
			f = &deliveredFile{}
			st.Files[rel] = f
		}
		did, err := s.deliverFile(ctx, clusterID, dir, rel, f, streams[rel], rotates[rel], hour, save)
		worked = worked || did
		if err != nil {
			failure = fmt.Errorf("deliver %s: %w", rel, err)
			break
		}
	}
	// Rotating files with nothing new still roll over at the hour.
	if failure == nil {
		for rel, f := range st.Files {
			if _, seen := streams[rel]; seen {
				continue
			}
			if _, rot, _ := deliveredPath(rel); rot {
				did, err := s.rotate(ctx, dir, rel, f, hour, save)
				worked = worked || did
				if err != nil {
					failure = fmt.Errorf("rotate %s: %w", rel, err)
					break
				}
			}
		}
	}
	msg := ""
	if failure != nil {
		msg = failure.Error()
	}
	if worked || failure != nil || msg != st.LastException || now.UnixMilli()-st.LastAttempted >= logStatusEvery.Milliseconds() {
		st.LastAttempted, st.LastException = now.UnixMilli(), msg
		if err := save(); err != nil {
			return err
		}
	}
	return failure
}

// deliverFile appends what is new in a file's sources, rolling a rotating
// file over first when its hour has passed. It reports whether it wrote.
func (s *Service) deliverFile(ctx context.Context, clusterID, dir, rel string, f *deliveredFile, found []source, rotates bool, hour string, save func() error) (bool, error) {
	worked := false
	if rotates {
		did, err := s.rotate(ctx, dir, rel, f, hour, save)
		if err != nil {
			return did, err
		}
		worked = did
	}
	srcs := f.addSources(found)
	for i, src := range srcs {
		for f.Sources[i].Offset < src.Size {
			off := f.Sources[i].Offset
			data, _, err := s.readLog(clusterID, src.Instance, rel, off, logDeliveryChunk)
			if err != nil {
				return worked, err
			}
			if len(data) == 0 {
				break
			}
			size, err := s.LogSink.AppendAt(ctx, path.Join(dir, rel), f.Size, data)
			if err != nil {
				return worked, err
			}
			f.Size = size
			f.Sources[i].Offset = off + int64(len(data))
			worked = true
			if err := save(); err != nil {
				return worked, err
			}
		}
	}
	return worked, nil
}

// rotate rolls a rotating file over when its hour has passed: the active
// file's contents become <name>-<hour>.log.gz and the active file starts
// empty. Each step is safe to repeat after a crash.
func (s *Service) rotate(ctx context.Context, dir, rel string, f *deliveredFile, hour string, save func() error) (bool, error) {
	if f.Hour == hour {
		return false, nil
	}
	if f.Hour == "" || f.Size == 0 {
		f.Hour = hour
		return false, save()
	}
	active := path.Join(dir, rel)
	data, err := s.LogSink.ReadFile(ctx, active, maxRotatedRead)
	if err != nil {
		return false, err
	}
	// A shorter active file was emptied by a rotation that crashed before
	// recording itself: its archive is written.
	if int64(len(data)) == f.Size {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			return false, err
		}
		if err := s.LogSink.WriteFile(ctx, path.Join(dir, rotatedPath(rel, f.Hour)), gz.Bytes()); err != nil {
			return false, err
		}
		if err := s.LogSink.WriteFile(ctx, active, nil); err != nil {
			return false, err
		}
	}
	f.Hour, f.Size = hour, 0
	return true, save()
}

// logStatus is a cluster's cluster_log_status, if it delivers logs.
func logStatus(tx store.Tx, clusterID string) (*LogSyncStatus, error) {
	st, err := store.Get[logDelivery](tx, kindLogDelivery, clusterID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && st.LastAttempted == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &LogSyncStatus{LastAttempted: st.LastAttempted, LastException: st.LastException}, nil
}

var _ = os.ErrNotExist
