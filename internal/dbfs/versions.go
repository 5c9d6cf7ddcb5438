package dbfs

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// stateAt decides what a file path held at time t (ms): its current node if
// the path has held it since t or earlier, else the version whose life
// [since, Replaced) covers t, else nothing. It is pure.
func stateAt(cur *Node, versions []Version, t int64) (Node, bool) {
	if cur != nil && !cur.IsDir && cur.since() <= t {
		return *cur, true
	}
	for _, v := range versions {
		if v.Node.since() <= t && t < v.Replaced {
			return v.Node, true
		}
	}
	return Node{}, false
}

// restoreAction is what restoring one file path to a time does.
type restoreAction int

const (
	keepPath   restoreAction = iota // the path already holds its state at t
	putVersion                      // the path gets back the contents it held at t
	removeFile                      // the path held nothing at t: its file goes
)

// restoreStep decides how to bring a file path back to time t, given what
// it holds now (nil: nothing) and its versions. A path that already holds
// the same contents (restored earlier) and a directory now at the path are
// left alone. It is pure.
func restoreStep(cur *Node, versions []Version, t int64) (restoreAction, Node) {
	if cur != nil && cur.IsDir {
		return keepPath, Node{}
	}
	target, ok := stateAt(cur, versions, t)
	switch {
	case ok && cur != nil && (target.since() == cur.since() || sameContents(target, *cur)):
		return keepPath, Node{}
	case ok:
		return putVersion, target
	case cur != nil:
		return removeFile, Node{}
	}
	return keepPath, Node{}
}

// sameContents reports whether two file nodes are made of the same blobs,
// as a file and the version it was restored from are.
func sameContents(a, b Node) bool {
	if a.Size != b.Size || len(a.Blocks) != len(b.Blocks) {
		return false
	}
	for i := range a.Blocks {
		if a.Blocks[i].Name != b.Blocks[i].Name {
			return false
		}
	}
	return true
}

func versionsOf(tx store.Tx, p string) ([]Version, error) {
	return store.List[Version](tx, kindVersion, p+sep)
}

// restorePath brings one file path back to its state at t, in tx, and
// reports whether it changed anything and whether a directory now at the
// path kept it from looking. What the path holds now, if replaced or
// removed, becomes a version itself, so a restore can be undone by another
// restore. A restored file counts as written by the restore: its
// modification time is the restore's.
func restorePath(tx store.Tx, p string, t int64) (changed, dir bool, err error) {
	now := tx.Now().UnixMilli()
	var cur *Node
	if n, err := getNode(tx, p); err == nil {
		cur = &n
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, false, err
	}
	versions, err := versionsOf(tx, p)
	if err != nil {
		return false, false, err
	}
	action, target := restoreStep(cur, versions, t)
	switch action {
	case putVersion:
		if cur != nil {
			if err := retire(tx, *cur, now, false, ""); err != nil {
				return false, false, err
			}
		}
		// The version stays in the history. Its blocks are now shared with
		// the current file; the sweep keeps a blob while anything names it.
		parent, _ := fspath.Split(p)
		if err := mkdirs(tx, parent, now); err != nil {
			return false, false, err
		}
		target.ModTime, target.Since = now, now
		return true, false, store.Put(tx, kindNode, nodeKey(p), target)
	case removeFile:
		if err := retire(tx, *cur, now, true, ""); err != nil {
			return false, false, err
		}
		return true, false, tx.Delete(kindNode, nodeKey(p))
	}
	return false, cur != nil && cur.IsDir, nil
}

// restore brings a file, or a folder with everything under it, back to
// time t in one transaction: files changed since come back as they were,
// deleted and moved-away files return, files that appeared since go, and
// so do directories made since that end up empty. Empty directories have no
// history: one deleted since t does not come back. It returns how many
// paths changed.
func (s *Service) restore(ctx context.Context, p string, t int64) (int, error) {
	changed := 0
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		changed = 0
		paths := map[string]bool{}
		n, err := getNode(tx, p)
		exists := err == nil
		switch {
		case exists:
			nodes, err := subtree(tx, n)
			if err != nil {
				return err
			}
			for _, x := range nodes {
				if !x.IsDir {
					paths[x.Path] = true
				}
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		// Files that were under the path at some time, gone since.
		prefixes := []string{p + sep, p + "/"}
		if p == "/" {
			prefixes = []string{"/"}
		}
		for _, prefix := range prefixes {
			err := store.ScanPrefix(tx, kindVersion, prefix, func(_ string, v Version) error {
				paths[v.Node.Path] = true
				return nil
			})
			if err != nil {
				return err
			}
		}
		if !exists && len(paths) == 0 {
			return notFound(p)
		}
		sorted := make([]string, 0, len(paths))
		for x := range paths {
			sorted = append(sorted, x)
		}
		sort.Strings(sorted)
		// Parents sort before children, so a file made since t where a
		// folder was goes before the folder's files come back. A folder made
		// since t where a file was goes only with the empty new folders, so
		// the paths it blocked get a second pass after them.
		var blocked []string
		for _, x := range sorted {
			ok, dir, err := restorePath(tx, x, t)
			if err != nil {
				return err
			}
			if ok {
				changed++
			}
			if dir {
				blocked = append(blocked, x)
			}
		}
		removed, err := removeNewEmptyDirs(tx, p, t)
		if err != nil {
			return err
		}
		changed += removed
		for _, x := range blocked {
			ok, _, err := restorePath(tx, x, t)
			if err != nil {
				return err
			}
			if ok {
				changed++
			}
		}
		return nil
	})
	return changed, err
}

// removeNewEmptyDirs removes the directories at and under p that the path
// has held only since after t and that are empty, deepest first, in tx.
func removeNewEmptyDirs(tx store.Tx, p string, t int64) (int, error) {
	n, err := getNode(tx, p)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil || !n.IsDir {
		return 0, err
	}
	nodes, err := subtree(tx, n)
	if err != nil {
		return 0, err
	}
	removed := 0
	// subtree lists parents first; backwards, every directory comes after
	// everything under it.
	for i := len(nodes) - 1; i >= 0; i-- {
		d := nodes[i]
		if !d.IsDir || d.Path == "/" || d.since() <= t {
			continue
		}
		full, err := hasChildren(tx, d.Path)
		if err != nil {
			return removed, err
		}
		if !full {
			if err := tx.Delete(kindNode, nodeKey(d.Path)); err != nil {
				return removed, err
			}
			removed++
		}
	}
	return removed, nil
}

// oldestRestorable is the earliest time a restore may go back to: versions
// replaced before it may have been purged, so a restore to an earlier time
// could not know what the files held.
func (s *Service) oldestRestorable() int64 {
	return s.now().Add(-s.Retention).UnixMilli()
}

// purgeBatch bounds the versions one purge transaction deletes, so a mass
// expiry does not hold the store's write lock for long. (A variable for
// tests.)
var purgeBatch = 1000

// Purge expires idle uploads, removes versions older than the retention and
// sweeps the blobs nothing references any more (those of expired uploads and
// purged versions, and any a crash left behind).
func (s *Service) Purge(ctx context.Context) error {
	if err := s.expire(ctx); err != nil {
		return err
	}
	_, err := s.sweep(ctx, sweepGrace)
	return err
}

// expire removes idle uploads and expired versions.
func (s *Service) expire(ctx context.Context) error {
	now := s.now()
	idle := now.Add(-HandleIdle).UnixMilli()
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		var expired []int64
		err := store.ScanPrefix(tx, kindHandle, "", func(_ string, h Handle) error {
			if h.LastUsed < idle {
				expired = append(expired, h.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range expired {
			if err := dropHandle(tx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	cutoff := now.Add(-s.Retention).UnixMilli()
	for {
		n := 0
		_, err := s.Store.Update(ctx, func(tx store.Tx) error {
			n = 0
			type entry struct{ index, version string }
			var batch []entry
			err := tx.Scan(kindVersionTime, "", "", func(key string, raw json.RawMessage) error {
				at, err := strconv.ParseInt(key[:min(20, len(key))], 10, 64)
				if err == nil && at >= cutoff {
					return store.ErrStopScan
				}
				var vkey string
				if err := json.Unmarshal(raw, &vkey); err != nil {
					return err
				}
				batch = append(batch, entry{key, vkey})
				if len(batch) == purgeBatch {
					return store.ErrStopScan
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, e := range batch {
				if err := tx.Delete(kindVersionTime, e.index); err != nil {
					return err
				}
				if err := tx.Delete(kindVersion, e.version); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
			n = len(batch)
			return nil
		})
		if err != nil || n < purgeBatch {
			return err
		}
	}
}

// sweepGrace spares blobs younger than it: one may have been written for a
// block whose metadata is about to commit.
const sweepGrace = 10 * time.Minute

// sweep deletes blobs that no file, version or upload names and that are
// older than grace.
func (s *Service) sweep(ctx context.Context, grace time.Duration) (int, error) {
	live := map[string]bool{}
	err := s.Store.View(ctx, func(tx store.Tx) error {
		mark := func(bs []storage.Blob) {
			for _, b := range bs {
				live[b.Name] = true
			}
		}
		if err := store.ScanPrefix(tx, kindNode, "", func(_ string, n Node) error { mark(n.Blocks); return nil }); err != nil {
			return err
		}
		if err := store.ScanPrefix(tx, kindVersion, "", func(_ string, v Version) error { mark(v.Node.Blocks); return nil }); err != nil {
			return err
		}
		return store.ScanPrefix(tx, kindHandleBlock, "", func(_ string, b storage.Blob) error { live[b.Name] = true; return nil })
	})
	if err != nil {
		return 0, err
	}
	return storage.Sweep(ctx, s.Storage, blobPrefix, grace, s.now(), func(name string) (bool, error) { return live[name], nil })
}

// Loop periods: expiry is cheap (it reads only what has expired); the sweep
// reads every file's block list, so it runs less often.
const (
	expireEvery = time.Minute
	sweepEvery  = 10 * time.Minute
)

// Run expires uploads and versions every minute and sweeps unreferenced
// blobs every ten, until ctx ends.
func (s *Service) Run(ctx context.Context) {
	expire := time.NewTicker(expireEvery)
	defer expire.Stop()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			err = s.expire(ctx)
		case <-sweep.C:
			_, err = s.sweep(ctx, sweepGrace)
		}
		if err != nil && ctx.Err() == nil {
			s.Log.Error("DBFS maintenance", "err", err)
		}
	}
}

// checkRestoreTime refuses a restore time outside the retention window.
func (s *Service) checkRestoreTime(t int64) error {
	now := s.now().UnixMilli()
	switch oldest := s.oldestRestorable(); {
	case t <= 0:
		return api.MissingField("timestamp")
	case t > now:
		return api.InvalidParam("timestamp %d is in the future.", t)
	case t < oldest:
		return api.InvalidParam("timestamp %d is older than the %s retention of DBFS versions; the earliest restorable time is %d (%s).",
			t, s.Retention, oldest, time.UnixMilli(oldest).UTC().Format(time.RFC3339))
	}
	return nil
}
