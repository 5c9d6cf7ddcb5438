package account

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/storage"
)

// Appendable objects (Azure's append and block blobs: Put Block + Put
// Block List). An object written by Append is kept as
//
//	.tandem/append/m/<name>         its manifest: the parts in order with their sizes
//	.tandem/append/p/<name>/<seq>   its parts, each an ordinary object
//
// both written through every layer of the account like any object (sealed
// by the encryption layers, copied, geo-replicated by name). An append
// writes one new part and then replaces the manifest, so its cost is the
// appended bytes plus the manifest (one entry per part), not the object's
// size; the manifest's replacement is the commit point. Reads splice the
// parts. Parts are merged in size classes (mergePlan) so their number stays
// small: at most mergeFanout-1 parts per class below maxMergedPart, plus
// one per maxMergedPart-sized run of bytes.
//
// A plain object of the same name (written by Put) wins over a manifest:
// Put writes it and then drops the manifest and parts, so a crash between
// leaves the new object; the first append to a plain object copies it into
// part 0 and deletes it last (the commit point of that conversion). Delete
// removes the manifest first, then the plain object, then the parts.
const (
	appendRoot     = storage.ReservedPrefix + "append/"
	manifestPrefix = appendRoot + "m/"
	partPrefix     = appendRoot + "p/"

	// mergeFanout parts of one level at the end of the object are merged
	// into one part of the next level.
	mergeFanout = 16
	// maxMergedPart bounds a merged part (and so the pause a merge adds to
	// an append): larger runs stay as they are.
	maxMergedPart = 32 << 20
)

func manifestName(name string) string { return manifestPrefix + name }

func partName(name string, seq uint64) string {
	return fmt.Sprintf("%s%s/%016x", partPrefix, name, seq)
}

// appendLogicalName returns the caller's object name an append record
// (manifest or part) belongs to.
func appendLogicalName(stored string) (string, bool) {
	if n, ok := strings.CutPrefix(stored, manifestPrefix); ok {
		return n, true
	}
	if n, ok := strings.CutPrefix(stored, partPrefix); ok {
		if i := strings.LastIndexByte(n, '/'); i > 0 {
			return n[:i], true
		}
	}
	return "", false
}

// isManifest reports whether a stored name is an append manifest (geo
// ships manifests after the parts they name).
func isManifest(stored string) bool { return strings.HasPrefix(stored, manifestPrefix) }

// manifest lists an appendable object's parts.
type manifest struct {
	// ID changes when the object is replaced (Put, Delete then Append):
	// a reader that lost a part to a merge re-reads the manifest and goes
	// on only if the object is still the same.
	ID      string `json:"id"`
	Next    uint64 `json:"next"`
	Size    int64  `json:"size"`
	Updated int64  `json:"updated_ns"`
	// Owner is the process that last removed stray parts (appendOpts).
	Owner string `json:"owner,omitempty"`
	Parts []part `json:"parts"`
	// Garbage are parts merged away that the secondary may still need (a
	// manifest that names them may be all it has): each is removed once
	// geo-replication's Last Sync Time passes At, the time after the
	// manifest without it was committed.
	Garbage []garbage `json:"garbage,omitempty"`
}

type garbage struct {
	Seq uint64 `json:"seq"`
	At  int64  `json:"at_ns"`
}

type part struct {
	Seq   uint64 `json:"seq"`
	Size  int64  `json:"size"`
	Level int    `json:"level,omitempty"`
}

// mergePlan returns the index of the first of the trailing parts to merge
// into one part of the next level, or -1. It takes the last part's level
// and, going back over the parts of that level, as many as fit in
// maxMergedPart, up to mergeFanout: it merges mergeFanout of them, or
// fewer (at least two) when the next would not fit. An append makes a
// level-0 part, so each byte is rewritten at most once per level, and a
// part larger than maxMergedPart (such as a big object converted by its
// first append) is never rewritten.
func mergePlan(parts []part) int {
	if len(parts) < 2 {
		return -1
	}
	level := parts[len(parts)-1].Level
	var sum int64
	i := len(parts)
	for i > 0 && len(parts)-i < mergeFanout {
		p := parts[i-1]
		if p.Level != level {
			return -1
		}
		if sum+p.Size > maxMergedPart {
			if len(parts)-i >= 2 {
				return i
			}
			return -1
		}
		sum += p.Size
		i--
	}
	if len(parts)-i == mergeFanout {
		return i
	}
	return -1
}

// appendView gives a backend (a stack's top, or the secondary endpoint's
// decrypting view) appendable objects.
type appendView struct {
	b storage.Backend
	// warn reports cleanup that failed after a change was committed (what
	// it left is hidden and removed by a later Put, Delete or Append).
	warn func(msg string, args ...any)
	// retire reports whether a part dropped from the manifest at a time
	// may be removed (geo-replication has shipped that manifest); nil:
	// at once.
	retire func(at time.Time) bool
}

// appendOpts are an append's inputs from the account.
type appendOpts struct {
	// owner names the appending process: the first append of a process
	// to an object (the manifest names another owner) removes the parts
	// neither the manifest nor its garbage names (left by a crash), if
	// gcAllowed (geo-replication has shipped what the last process wrote).
	owner     string
	gcAllowed bool
	now       time.Time
	// garbage are parts earlier appends dropped, to record in the manifest.
	garbage []garbage
}

func (v appendView) warnf(msg string, args ...any) {
	if v.warn != nil {
		v.warn(msg, args...)
	}
}

func (v appendView) readManifest(ctx context.Context, name string) (manifest, error) {
	r, err := v.b.Get(ctx, manifestName(name), 0, -1)
	if err != nil {
		return manifest{}, err
	}
	defer r.Close()
	var m manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return manifest{}, fmt.Errorf("%s: append manifest: %v: %w", name, err, storage.ErrCorrupt)
	}
	return m, nil
}

// exists reports whether a stored object exists, by listing (no key
// needed, as Delete needs none).
func (v appendView) exists(ctx context.Context, stored string) (bool, error) {
	errStop := errors.New("stop")
	found := false
	err := v.b.List(ctx, stored, func(oi storage.ObjectInfo) error {
		if oi.Name == stored {
			found = true
		}
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return false, err
	}
	return found, nil
}

// statExists reports whether a stored object exists, by Stat (for writes,
// which need the key anyway).
func (v appendView) statExists(ctx context.Context, stored string) (bool, error) {
	_, err := v.b.Stat(ctx, stored)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (v appendView) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	r, err := v.b.Get(ctx, name, offset, length)
	if !errors.Is(err, storage.ErrNotFound) {
		return r, err
	}
	m, merr := v.readManifest(ctx, name)
	if errors.Is(merr, storage.ErrNotFound) {
		return nil, err
	}
	if merr != nil {
		return nil, merr
	}
	lo := min(max(offset, 0), m.Size)
	hi := m.Size
	if length >= 0 {
		hi = min(m.Size, lo+length)
	}
	return &splice{v: v, ctx: ctx, name: name, m: m, pos: lo, end: hi}, nil
}

// splice reads [pos, end) of an appendable object part by part.
type splice struct {
	v        appendView
	ctx      context.Context
	name     string
	m        manifest
	pos, end int64
	cur      io.ReadCloser
	curEnd   int64
}

func (s *splice) open() error {
	for retry := 0; ; retry++ {
		var at int64
		for _, p := range s.m.Parts {
			if s.pos < at+p.Size {
				r, err := s.v.b.Get(s.ctx, partName(s.name, p.Seq), s.pos-at, min(at+p.Size, s.end)-s.pos)
				if errors.Is(err, storage.ErrNotFound) && retry < 3 {
					// Merged away since the manifest was read: the same
					// bytes are in the new manifest's parts.
					m, merr := s.v.readManifest(s.ctx, s.name)
					if merr != nil || m.ID != s.m.ID || m.Size < s.end {
						return fmt.Errorf("%s: replaced while being read: %w", s.name, err)
					}
					s.m = m
					break
				}
				if err != nil {
					return err
				}
				s.cur, s.curEnd = r, min(at+p.Size, s.end)
				return nil
			}
			at += p.Size
		}
		if s.cur != nil {
			return nil
		}
		if retry >= 3 {
			return fmt.Errorf("%s: offset %d is beyond the manifest's parts: %w", s.name, s.pos, storage.ErrCorrupt)
		}
	}
}

func (s *splice) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if s.pos >= s.end {
			return 0, io.EOF
		}
		if s.cur == nil {
			if err := s.open(); err != nil {
				return 0, err
			}
		}
		n, err := s.cur.Read(p[:min(int64(len(p)), s.curEnd-s.pos)])
		s.pos += int64(n)
		if s.pos >= s.curEnd || err == io.EOF {
			s.cur.Close()
			s.cur = nil
			if s.pos < s.curEnd && err == io.EOF {
				return n, fmt.Errorf("%s: part ended early: %w", s.name, io.ErrUnexpectedEOF)
			}
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (s *splice) Close() error {
	if s.cur != nil {
		return s.cur.Close()
	}
	return nil
}

func (v appendView) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	oi, err := v.b.Stat(ctx, name)
	if !errors.Is(err, storage.ErrNotFound) {
		return oi, err
	}
	m, merr := v.readManifest(ctx, name)
	if errors.Is(merr, storage.ErrNotFound) {
		return oi, err
	}
	if merr != nil {
		return storage.ObjectInfo{}, merr
	}
	return storage.ObjectInfo{Name: name, Size: m.Size, ModTime: time.Unix(0, m.Updated)}, nil
}

// List lists plain objects and appendable ones, once each, in name order,
// never the account's own records.
func (v appendView) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	var apps []storage.ObjectInfo
	err := v.b.List(ctx, manifestName(prefix), func(oi storage.ObjectInfo) error {
		name := strings.TrimPrefix(oi.Name, manifestPrefix)
		m, err := v.readManifest(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		apps = append(apps, storage.ObjectInfo{Name: name, Size: m.Size, ModTime: time.Unix(0, m.Updated)})
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
	i := 0
	err = v.b.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if strings.HasPrefix(oi.Name, storage.ReservedPrefix) {
			return nil
		}
		for i < len(apps) && apps[i].Name < oi.Name {
			if err := fn(apps[i]); err != nil {
				return err
			}
			i++
		}
		if i < len(apps) && apps[i].Name == oi.Name {
			i++ // the plain object wins (a Put not yet cleaned up after)
		}
		return fn(oi)
	})
	if err != nil {
		return err
	}
	for ; i < len(apps); i++ {
		if err := fn(apps[i]); err != nil {
			return err
		}
	}
	return nil
}

// Put stores a plain object, which hides any appendable one of the name at
// once, then removes the appendable one.
func (v appendView) Put(ctx context.Context, name string, r io.Reader) error {
	if err := v.b.Put(ctx, name, r); err != nil {
		return err
	}
	if ok, err := v.statExists(ctx, manifestName(name)); err == nil && ok {
		if err := v.drop(ctx, name, nil); err != nil {
			v.warnf("storage: the replaced appendable object was not removed", "name", name, "err", err)
		}
	}
	return nil
}

// Delete removes the manifest, then the plain object, then the parts.
func (v appendView) Delete(ctx context.Context, name string) error {
	ok, err := v.exists(ctx, manifestName(name))
	if err != nil {
		return err
	}
	if ok {
		if err := v.b.Delete(ctx, manifestName(name)); err != nil {
			return err
		}
	}
	if err := v.b.Delete(ctx, name); err != nil {
		return err
	}
	if ok {
		return v.dropParts(ctx, name, nil)
	}
	return nil
}

// drop removes the manifest and the parts of name.
func (v appendView) drop(ctx context.Context, name string, keep map[uint64]bool) error {
	if err := v.b.Delete(ctx, manifestName(name)); err != nil {
		return err
	}
	return v.dropParts(ctx, name, keep)
}

// dropParts removes the parts of name, except those in keep.
func (v appendView) dropParts(ctx context.Context, name string, keep map[uint64]bool) error {
	var dead []string
	pre := partPrefix + name + "/"
	err := v.b.List(ctx, pre, func(oi storage.ObjectInfo) error {
		rest := oi.Name[len(pre):]
		if strings.Contains(rest, "/") {
			return nil // a part of name + "/..."
		}
		var seq uint64
		if _, err := fmt.Sscanf(rest, "%016x", &seq); err != nil || len(rest) != 16 {
			return nil
		}
		if !keep[seq] {
			dead = append(dead, oi.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range dead {
		if err := v.b.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func newObjectID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// appendOnce appends r to name; the caller serializes appends to a name.
// It returns the parts the append dropped that the secondary may still
// need: the caller records them, with the time after the return, for the
// next append's manifest (appendOpts.garbage).
func (v appendView) appendOnce(ctx context.Context, name string, r io.Reader, o appendOpts) ([]uint64, error) {
	m, err := v.readManifest(ctx, name)
	haveManifest := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	gc := m.Owner != o.owner && o.gcAllowed
	plain, err := v.statExists(ctx, name)
	if err != nil {
		return nil, err
	}
	if plain && haveManifest {
		// A Put or a conversion cut short: the plain object is the object.
		if err := v.drop(ctx, name, nil); err != nil {
			return nil, err
		}
		haveManifest = false
	}
	if !haveManifest {
		m = manifest{ID: newObjectID()}
		gc = true
	} else {
		m.Garbage = append(m.Garbage, o.garbage...)
	}
	if gc {
		keep := map[uint64]bool{}
		for _, p := range m.Parts {
			keep[p.Seq] = true
		}
		for _, g := range m.Garbage {
			keep[g.Seq] = true
		}
		if err := v.dropParts(ctx, name, keep); err != nil {
			return nil, err
		}
		m.Owner = o.owner
	}
	if plain {
		// First append to a plain object: its bytes become part 0 (one
		// copy, once).
		pr, err := v.b.Get(ctx, name, 0, -1)
		if err != nil {
			return nil, err
		}
		cr := &countReader{r: pr}
		err = v.b.Put(ctx, partName(name, m.Next), cr)
		pr.Close()
		if err != nil {
			return nil, err
		}
		m.Parts = append(m.Parts, part{Seq: m.Next, Size: cr.n})
		m.Size += cr.n
		m.Next++
	}
	cr := &countReader{r: r}
	seq := m.Next
	if err := v.b.Put(ctx, partName(name, seq), cr); err != nil {
		return nil, err
	}
	m.Next++
	var dead []uint64
	if cr.n == 0 {
		// Nothing to append: the empty part goes, and the manifest is
		// written only to create the object.
		defer v.b.Delete(ctx, partName(name, seq))
		if haveManifest && !plain {
			return nil, nil
		}
	} else {
		m.Parts = append(m.Parts, part{Seq: seq, Size: cr.n})
		m.Size += cr.n
	}
	for {
		from := mergePlan(m.Parts)
		if from < 0 {
			break
		}
		merged, err := v.merge(ctx, name, m.Parts[from:], m.Next)
		if err != nil {
			return nil, err
		}
		for _, p := range m.Parts[from:] {
			dead = append(dead, p.Seq)
		}
		m.Parts = append(m.Parts[:from:from], merged)
		m.Next++
	}
	var retired []uint64
	kept := m.Garbage[:0]
	for _, g := range m.Garbage {
		if v.retire == nil || v.retire(time.Unix(0, g.At)) {
			retired = append(retired, g.Seq)
		} else {
			kept = append(kept, g)
		}
	}
	m.Garbage = kept
	if v.retire == nil {
		retired, dead = append(retired, dead...), nil
	}
	m.Updated = o.now.UnixNano()
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := v.b.Put(ctx, manifestName(name), bytes.NewReader(b)); err != nil {
		return nil, err
	}
	if plain {
		// The commit point of the conversion: the manifest shows now.
		if err := v.b.Delete(ctx, name); err != nil {
			return nil, err
		}
	}
	for _, seq := range retired {
		if err := v.b.Delete(ctx, partName(name, seq)); err != nil {
			v.warnf("storage: a merged part was not removed", "name", name, "err", err)
			break
		}
	}
	return dead, nil
}

// merge writes the parts' bytes as one new part.
func (v appendView) merge(ctx context.Context, name string, parts []part, seq uint64) (part, error) {
	rs := make([]io.Reader, len(parts))
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var size int64
	for i, p := range parts {
		r, err := v.b.Get(ctx, partName(name, p.Seq), 0, -1)
		if err != nil {
			return part{}, fmt.Errorf("merge the parts of %s: %w", name, err)
		}
		closers = append(closers, r)
		rs[i] = io.LimitReader(r, p.Size)
		size += p.Size
	}
	cr := &countReader{r: io.MultiReader(rs...)}
	if err := v.b.Put(ctx, partName(name, seq), cr); err != nil {
		return part{}, err
	}
	if cr.n != size {
		return part{}, fmt.Errorf("merge the parts of %s: read %d bytes of %d: %w", name, cr.n, size, storage.ErrCorrupt)
	}
	return part{Seq: seq, Size: size, Level: parts[len(parts)-1].Level + 1}, nil
}

// view is the account's objects as callers see them: plain and appendable.
func (a *Account) view(st *stack) appendView {
	v := appendView{b: st.top, warn: a.opts.Log.Warn}
	if g := st.geo; g != nil {
		v.retire = func(at time.Time) bool {
			s := g.Status()
			return s.HasLastSyncTime && s.LastSyncTime.After(at)
		}
	}
	return v
}

// regionLocal applies a RegionLocal rule to the caller's name an append
// record belongs to, so an appendable object's parts stay where it does.
func regionLocal(local func(string) bool) func(string) bool {
	if local == nil {
		return nil
	}
	return func(stored string) bool {
		if n, ok := appendLogicalName(stored); ok {
			stored = n
		}
		return local(stored)
	}
}

var _ interface {
	Append(ctx context.Context, name string, r io.Reader) error
} = (*Account)(nil)

// Append appends r to the object name, creating it if need be, at a cost
// in proportion to r (and the manifest), not to the object. Until it
// returns nil readers see the object without r; after, with all of it. A
// crash in between leaves the old object; retrying may then append r once
// (callers that cannot tell, such as the audit destination, deduplicate).
// Appends to one name are serialized within the process; one process at
// a time may append to a name.
func (a *Account) Append(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := a.writable(); err != nil {
		return err
	}
	defer a.lockAppend(name)()
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.set.InfrastructureConversion != "" {
		// The converter rewrites objects one at a time under their locks:
		// hold those of the plain object and the manifest.
		defer a.lockNames(name, manifestName(name))()
	}
	v := a.view(a.current())
	// Stray parts are removed once per name and process, when every
	// change of the previous process is in the secondary.
	gcAllowed := v.retire == nil || v.retire(a.started)
	pend, _ := a.garbage.LoadAndDelete(name)
	pending, _ := pend.([]garbage)
	dropped, err := v.appendOnce(ctx, name, r, appendOpts{owner: a.instance, gcAllowed: gcAllowed, now: time.Now(), garbage: pending})
	if err != nil {
		if len(pending) > 0 {
			a.garbage.Store(name, pending)
		}
		return err
	}
	if len(dropped) > 0 {
		// Recorded in the next append's manifest (the pending ones are in
		// this one's).
		at := time.Now().UnixNano()
		next := make([]garbage, 0, len(dropped))
		for _, seq := range dropped {
			next = append(next, garbage{Seq: seq, At: at})
		}
		a.garbage.Store(name, next)
	}
	return nil
}

// lockAppend orders the writes of one name (Append, Put, Delete): an
// append reads the manifest and the plain object before it commits.
func (a *Account) lockAppend(name string) func() {
	h := fnv.New32a()
	h.Write([]byte(name))
	m := &a.appends[h.Sum32()%uint32(len(a.appends))]
	m.Lock()
	return m.Unlock
}

// lockNames takes the write locks of several names, each stripe once, in
// stripe order.
func (a *Account) lockNames(names ...string) func() {
	idx := map[uint32]bool{}
	for _, n := range names {
		h := fnv.New32a()
		h.Write([]byte(n))
		idx[h.Sum32()%uint32(len(a.names))] = true
	}
	order := make([]int, 0, len(idx))
	for i := range idx {
		order = append(order, int(i))
	}
	sort.Ints(order)
	for _, i := range order {
		a.names[i].Lock()
	}
	return func() {
		for _, i := range order {
			a.names[i].Unlock()
		}
	}
}
