package replication

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tandemdata/tandem/internal/store"
)

// A Posture turns the primary's document into the one a passive region
// keeps: the same object, made inert (no idle instances, schedules paused,
// no concurrent runs, clusters not started). It is pure: the same input
// always gives the same output, and applying it to its own output changes
// nothing. The primary's real document is kept aside and put back when the
// region is promoted, so a posture never needs an inverse.
type Posture func(real json.RawMessage) (json.RawMessage, error)

// PostureKind holds the primary's real documents of a passive region, keyed
// by kind and key. It is local: each region keeps its own.
const PostureKind store.Kind = "replication.posture"

func init() { store.RegisterLocal(PostureKind) }

// postureKey is the key of a kept real document.
func postureKey(kind store.Kind, key string) string { return string(kind) + "\x1f" + key }

// splitPostureKey is the inverse of postureKey.
func splitPostureKey(k string) (store.Kind, string, bool) {
	kind, key, ok := strings.Cut(k, "\x1f")
	return store.Kind(kind), key, ok
}

var (
	posturesMu sync.RWMutex
	postures   = map[store.Kind]Posture{}
)

// RegisterPosture declares the passive posture of a store kind. The domain
// package that owns the kind calls it once, at init; a kind has at most one.
func RegisterPosture(kind store.Kind, p Posture) {
	posturesMu.Lock()
	defer posturesMu.Unlock()
	if _, dup := postures[kind]; dup {
		panic(fmt.Sprintf("replication: posture of %s registered twice", kind))
	}
	postures[kind] = p
}

// promotions are how kept real documents come back at promotion, for the
// kinds whose real document cannot come back as it was.
var promotions = map[store.Kind]Posture{}

// RegisterPromotion declares how a kind's kept real document is put back
// at promotion when not as it was: a cluster that ran in the former leader
// has no instances in the promoted region, so it comes back terminated
// (its configuration as the leader had it). Like a posture it is pure and
// idempotent, registered once, at init, by the package that owns the kind.
func RegisterPromotion(kind store.Kind, p Posture) {
	posturesMu.Lock()
	defer posturesMu.Unlock()
	if _, dup := promotions[kind]; dup {
		panic(fmt.Sprintf("replication: promotion of %s registered twice", kind))
	}
	promotions[kind] = p
}

func promotionOf(kind store.Kind) (Posture, bool) {
	posturesMu.RLock()
	defer posturesMu.RUnlock()
	p, ok := promotions[kind]
	return p, ok
}

// PostureOf returns the registered posture of kind, if any.
func PostureOf(kind store.Kind) (Posture, bool) {
	posturesMu.RLock()
	defer posturesMu.RUnlock()
	p, ok := postures[kind]
	return p, ok
}

// PostureKinds lists the kinds that have a posture, sorted.
func PostureKinds() []store.Kind {
	posturesMu.RLock()
	defer posturesMu.RUnlock()
	out := make([]store.Kind, 0, len(postures))
	for k := range postures {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// passiveOps rewrites the ops of a change taken from the primary for a
// passive region: ops on local kinds are dropped (they never belong to
// another region); a put on a kind with a posture stores the passive
// document and keeps the real one under PostureKind; a delete removes both.
// A posture that fails leaves the real document in place and is reported:
// the passive region does not run its loops anyway, the posture is the
// second line of defence, and one odd document must not stop replication.
func passiveOps(ops []store.Op) ([]store.Op, []error) {
	var out []store.Op
	var errs []error
	for _, op := range ops {
		if store.IsLocal(op.Kind) {
			continue
		}
		p, ok := PostureOf(op.Kind)
		if !ok {
			out = append(out, op)
			continue
		}
		pk := postureKey(op.Kind, op.Key)
		if op.Deleted() {
			out = append(out, op, store.Op{Kind: PostureKind, Key: pk})
			continue
		}
		passive, err := p(op.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("passive posture of %s %q: %w", op.Kind, op.Key, err))
			out = append(out, op, store.Op{Kind: PostureKind, Key: pk})
			continue
		}
		out = append(out,
			store.Op{Kind: op.Kind, Key: op.Key, Value: passive},
			store.Op{Kind: PostureKind, Key: pk, Value: op.Value})
	}
	return out, errs
}

// SweepOps returns the ops that put every document of a posture kind that
// has no kept real value into the passive posture: a region that served as
// primary and now follows its peer holds real documents written while it was
// active. The follower adds them to the first change it applies, so they
// commit atomically with it and take no sequence number of their own.
func SweepOps(tx store.Tx) ([]store.Op, error) {
	var out []store.Op
	for _, kind := range PostureKinds() {
		p, _ := PostureOf(kind)
		err := tx.Scan(kind, "", "", func(key string, real json.RawMessage) error {
			kept, err := store.Exists(tx, PostureKind, postureKey(kind, key))
			if err != nil || kept {
				return err
			}
			passive, err := p(real)
			if err != nil {
				return nil // left as it is; see passiveOps
			}
			out = append(out,
				store.Op{Kind: kind, Key: key, Value: passive},
				store.Op{Kind: PostureKind, Key: postureKey(kind, key), Value: append(json.RawMessage(nil), real...)})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("sweep %s into the passive posture: %w", kind, err)
		}
	}
	return out, nil
}

// RestorePostures puts back the real document of every object kept under
// PostureKind and drops the kept copies, in tx. Promotion calls it in the
// transaction that makes the region active. It returns how many documents
// it restored.
func RestorePostures(tx store.Tx) (int, error) {
	type kept struct {
		key  string
		kind store.Kind
		doc  string
		real json.RawMessage
	}
	var all []kept
	err := tx.Scan(PostureKind, "", "", func(k string, real json.RawMessage) error {
		kind, key, ok := splitPostureKey(k)
		if !ok {
			return fmt.Errorf("malformed posture key %q", k)
		}
		all = append(all, kept{key: k, kind: kind, doc: key, real: append(json.RawMessage(nil), real...)})
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range all {
		// A document deleted since is not resurrected.
		if ok, err := store.Exists(tx, k.kind, k.doc); err != nil {
			return 0, err
		} else if ok {
			if p, ok := promotionOf(k.kind); ok {
				// A promotion that fails puts the real document back as it
				// was (see passiveOps for why one document must not stop it).
				if promoted, err := p(k.real); err == nil {
					k.real = promoted
				}
			}
			if err := tx.Put(k.kind, k.doc, k.real); err != nil {
				return 0, err
			}
		}
		if err := tx.Delete(PostureKind, k.key); err != nil {
			return 0, err
		}
	}
	return len(all), nil
}

// SetFields returns a Posture that sets top-level or dotted fields of a JSON
// object document ("min_idle_instances", "settings.max_concurrent_runs").
// A field whose parent object is missing is left out unless create is true
// for it: a job without a schedule stays without one.
func SetFields(fields ...Field) Posture {
	return func(real json.RawMessage) (json.RawMessage, error) {
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(real))
		dec.UseNumber() // ids beyond 2^53 survive
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("document is not a JSON object: %w", err)
		}
		if doc == nil {
			return nil, errors.New("document is null")
		}
		for _, f := range fields {
			setPath(doc, strings.Split(f.Path, "."), f.Value, f.Create)
		}
		return json.Marshal(doc)
	}
}

// Field is one field a SetFields posture sets.
type Field struct {
	Path  string
	Value any
	// Create makes missing parent objects and the field itself; otherwise
	// the field is only set when its parent object exists.
	Create bool
}

func setPath(obj map[string]any, path []string, v any, create bool) {
	for _, p := range path[:len(path)-1] {
		next, ok := obj[p].(map[string]any)
		if !ok {
			if !create {
				return
			}
			next = map[string]any{}
			obj[p] = next
		}
		obj = next
	}
	obj[path[len(path)-1]] = v
}
