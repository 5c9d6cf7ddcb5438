package dbfs

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/tandemdata/tandem/internal/fspath"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// stateAt decides what a file path held at time t (ms): its current
// contents if they were written at or before t, else the version whose life
// covers t, else nothing. It is pure.
func stateAt(cur *Node, versions []Version, t int64) (Node, bool) {
	if cur != nil && !cur.IsDir && cur.ModTime <= t {
		return *cur, true
	}
	for _, v := range versions {
		if v.Node.ModTime <= t && t < v.Replaced {
			return v.Node, true
		}
	}
	return Node{}, false
}

func versionsOf(tx store.Tx, p string) ([]Version, error) {
	return store.List[Version](tx, kindVersion, p+sep)
}

// restorePath brings one file path back to its state at t, in tx. The
// current contents, if replaced or removed, become a version themselves, so
// a restore can be undone by another restore. The restored file's time is
// the restore's: it has held those contents since then.
func restorePath(tx store.Tx, p string, t int64) (bool, error) {
	now := tx.Now().UnixMilli()
	var cur *Node
	if n, err := getNode(tx, p); err == nil {
		if n.IsDir {
			return false, nil
		}
		cur = &n
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	versions, err := versionsOf(tx, p)
	if err != nil {
		return false, err
	}
	target, ok := stateAt(cur, versions, t)
	switch {
	case ok && cur != nil && target.ModTime == cur.ModTime:
		return false, nil // already as it was
	case ok:
		if cur != nil {
			if err := retire(tx, *cur, now, false); err != nil {
				return false, err
			}
		}
		// The version stays in the history: it says what the file held
		// before. Its blocks are now shared with the current file; blocks are
		// only ever deleted by the sweep, which keeps anything still named.
		parent, _ := fspath.Split(p)
		if err := mkdirs(tx, parent, now); err != nil {
			return false, err
		}
		target.ModTime = now
		return true, store.Put(tx, kindNode, nodeKey(p), target)
	case cur != nil:
		if err := retire(tx, *cur, now, true); err != nil {
			return false, err
		}
		return true, tx.Delete(kindNode, nodeKey(p))
	}
	return false, nil
}

// restore brings a file, or every file under a folder, back to time t in
// one transaction. It returns how many paths changed.
func (s *Service) restore(ctx context.Context, p string, t int64) (int, error) {
	changed := 0
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		changed = 0
		paths := map[string]bool{}
		n, err := getNode(tx, p)
		switch {
		case err == nil:
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
		// Files that existed at t under the path, deleted since.
		prefixes := []string{p + sep}
		if p == "/" {
			prefixes = []string{"/"}
		} else {
			prefixes = append(prefixes, p+"/")
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
		if len(paths) == 0 {
			return notFound(p)
		}
		sorted := make([]string, 0, len(paths))
		for x := range paths {
			sorted = append(sorted, x)
		}
		sort.Strings(sorted)
		for _, x := range sorted {
			ok, err := restorePath(tx, x, t)
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

// Purge removes versions older than the retention and expired upload
// handles, then sweeps the blocks nothing references any more (those of
// purged versions and handles, and any a crash left behind).
func (s *Service) Purge(ctx context.Context) error {
	now := s.now()
	cutoff := now.Add(-s.Retention).UnixMilli()
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		var expired []string
		err := s.scanVersions(tx, func(key string, v Version) {
			if v.Replaced < cutoff {
				expired = append(expired, key)
			}
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := tx.Delete(kindVersion, k); err != nil {
				return err
			}
		}
		idle := now.Add(-HandleIdle).UnixMilli()
		return store.ScanPrefix(tx, kindHandle, "", func(key string, h Handle) error {
			if h.LastUsed < idle {
				return tx.Delete(kindHandle, key)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	// A block younger than the grace may belong to an upload whose
	// metadata is not committed yet.
	_, err = s.sweep(ctx, 10*time.Minute)
	return err
}

func (s *Service) scanVersions(tx store.Tx, fn func(key string, v Version)) error {
	return store.ScanPrefix(tx, kindVersion, "", func(key string, v Version) error {
		fn(key, v)
		return nil
	})
}

// sweep deletes blocks that no file, version or handle names and that are
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
		if err := s.scanVersions(tx, func(_ string, v Version) { mark(v.Node.Blocks) }); err != nil {
			return err
		}
		return store.ScanPrefix(tx, kindHandle, "", func(_ string, h Handle) error { mark(h.Blocks); return nil })
	})
	if err != nil {
		return 0, err
	}
	return storage.Sweep(ctx, s.Storage, blobPrefix, grace, s.now(), func(name string) (bool, error) { return live[name], nil })
}

// Run expires handles, purges old versions and sweeps orphan blocks every
// minute until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Purge(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("DBFS purge", "err", err)
		}
	}
}
