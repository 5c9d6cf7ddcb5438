package redundancy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/storage"
)

// verify reads a copy's whole object and checks every block.
func (l *Layer) verify(ctx context.Context, i int, name string) (View, error) {
	v := View{Healthy: l.healthyMask()[i]}
	tr, size, err := l.readTrailer(ctx, i, name)
	if errors.Is(err, storage.ErrNotFound) {
		v.Status = Missing
		return v, nil
	}
	if errors.Is(err, storage.ErrCorrupt) {
		v.Status = Corrupt
		return v, nil
	}
	if err != nil {
		return v, err
	}
	r, err := l.copies[i].Backend.Get(ctx, name, 0, size)
	if err != nil {
		return v, err
	}
	defer r.Close()
	buf := make([]byte, l.block)
	for bi := range tr.blocks {
		n, err := io.ReadFull(r, buf[:min(l.block, size-int64(bi)*l.block)])
		if err != nil || sha256.Sum256(buf[:n]) != tr.blocks[bi] {
			v.Status = Corrupt
			return v, nil
		}
	}
	v.Status, v.Gen, v.Sum = OK, tr.gen, tr.sum
	return v, nil
}

// RepairObject verifies every copy of name and repairs the ones that
// differ from the source PlanObject picks.
func (l *Layer) RepairObject(ctx context.Context, name string) (Plan, error) {
	unlock := l.lock(name)
	defer unlock()
	views := make([]View, len(l.copies))
	reachable := make([]bool, len(l.copies))
	for i := range l.copies {
		v, err := l.verify(ctx, i, name)
		if err != nil {
			// An unreachable copy is neither source nor target now.
			l.degrade(i, err)
			views[i] = View{Status: Missing}
			continue
		}
		views[i], reachable[i] = v, true
	}
	p := PlanObject(views)
	if p.Lost {
		return p, fmt.Errorf("%s: %w", name, storage.ErrCorrupt)
	}
	var errs []error
	for _, i := range p.Repair {
		if !reachable[i] {
			continue
		}
		if err := l.copyObject(ctx, p.Source, i, name); err != nil {
			errs = append(errs, err)
			l.degrade(i, err)
			continue
		}
		l.countRepair(i, name, "repaired")
	}
	for _, i := range p.Delete {
		if !reachable[i] {
			continue
		}
		if err := l.copies[i].Backend.Delete(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		l.countRepair(i, name, "removed")
	}
	return p, errors.Join(errs...)
}

func (l *Layer) countRepair(i int, name, what string) {
	l.mu.Lock()
	l.health[i].Repaired++
	l.mu.Unlock()
	l.log.Info("storage copy "+what, "copy", l.copies[i].Name, "object", name)
}

// copyObject copies the stored bytes (object and trailer) between copies.
func (l *Layer) copyObject(ctx context.Context, from, to int, name string) error {
	r, err := l.copies[from].Backend.Get(ctx, name, 0, -1)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := l.copies[to].Backend.Put(ctx, name, r); err != nil {
		return fmt.Errorf("repair %s on %s: %w", name, l.copies[to].Name, err)
	}
	return nil
}

// ScrubReport sums up one pass of the scrubber.
type ScrubReport struct {
	Objects  int
	Repaired int
	Removed  int
	Lost     []string
	// Restored names the degraded copies the pass made healthy again.
	Restored []string
	Started  time.Time
	Took     time.Duration
}

// Scrub verifies every object on every copy, repairs what differs, and
// makes degraded copies healthy again once a whole pass has brought them in
// line without a write to them failing meanwhile.
func (l *Layer) Scrub(ctx context.Context) (ScrubReport, error) {
	rep := ScrubReport{Started: l.now()}
	// A lost copy gets its marker back first, so a restart during the
	// rebuild still knows the copy as degraded, not as new.
	listed := make([]bool, len(l.copies))
	names := map[string]bool{}
	for i, c := range l.copies {
		if _, err := c.Backend.Stat(ctx, markerName); errors.Is(err, storage.ErrNotFound) {
			l.degrade(i, errors.New("copy marker missing: the copy's data was lost; rebuilding"))
			c.Backend.Put(ctx, markerName, bytesOf(`{"copy":"`+c.Name+`","rebuilt":true}`))
		}
		err := c.Backend.List(ctx, "", func(oi storage.ObjectInfo) error {
			if oi.Name != markerName {
				names[oi.Name] = true
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			l.degrade(i, fmt.Errorf("list: %w", err))
			continue
		}
		listed[i] = true
	}
	// Writes that fail on a copy from here on keep it degraded.
	l.mu.Lock()
	failuresAtStart := append([]int64(nil), l.failures...)
	l.mu.Unlock()
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var errs []error
	for _, name := range sorted {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		p, err := l.RepairObject(ctx, name)
		rep.Objects++
		rep.Repaired += len(p.Repair)
		rep.Removed += len(p.Delete)
		if p.Lost {
			rep.Lost = append(rep.Lost, name)
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		l.mu.Lock()
		changed := false
		for i := range l.health {
			h := &l.health[i]
			if h.State == Degraded && listed[i] && l.failures[i] == failuresAtStart[i] {
				h.State, h.Since, h.LastError = Healthy, l.now(), ""
				rep.Restored = append(rep.Restored, h.Name)
				changed = true
				l.log.Info("storage copy healthy again", "copy", h.Name)
			}
		}
		l.mu.Unlock()
		if changed {
			if err := l.saveState(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	rep.Took = l.now().Sub(rep.Started)
	return rep, errors.Join(errs...)
}

// Degraded reports whether any copy is degraded.
func (l *Layer) Degraded() bool {
	for _, h := range l.Health() {
		if h.State != Healthy {
			return true
		}
	}
	return false
}

// Run is the scrubber loop: a full pass every interval, and a pass as soon
// as a copy is degraded (checked every probe), until ctx ends.
func (l *Layer) Run(ctx context.Context, interval, probe time.Duration) {
	if probe <= 0 {
		probe = 10 * time.Second
	}
	last := l.now()
	t := time.NewTicker(probe)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.probeMarkers(ctx)
		if !l.Degraded() && (interval <= 0 || l.now().Sub(last) < interval) {
			continue
		}
		rep, err := l.Scrub(ctx)
		last = l.now()
		if err != nil && ctx.Err() == nil {
			l.log.Warn("storage scrub pass failed", "err", err)
		}
		if len(rep.Lost) > 0 {
			l.log.Error("storage objects corrupt in every copy", "objects", len(rep.Lost), "first", rep.Lost[0])
		}
	}
}

// probeMarkers degrades a copy whose marker vanished (a zone lost).
func (l *Layer) probeMarkers(ctx context.Context) {
	changed := false
	for i, c := range l.copies {
		if _, err := c.Backend.Stat(ctx, markerName); err != nil && ctx.Err() == nil {
			if l.healthyMask()[i] {
				changed = true
			}
			l.degrade(i, fmt.Errorf("copy marker: %w", err))
		}
	}
	if changed {
		l.saveState()
	}
}

func bytesOf(s string) io.Reader { return strings.NewReader(s) }
