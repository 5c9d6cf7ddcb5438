package dr

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/tandemdata/tandem/internal/store"
)

// Role is what a region does at a moment.
type Role string

const (
	// Active serves reads and writes and runs the schedulers.
	Active Role = "active"
	// Draining is the start of a planned failover: user writes are refused
	// (for a few seconds: clients retry), no new scheduled runs start, and
	// running work finishes or is cancelled.
	Draining Role = "draining"
	// Sealed accepts no write at all: the peer region is catching up with
	// the region's last change before it takes over.
	Sealed Role = "sealed"
	// Passive follows the active region's change log and serves reads.
	Passive Role = "passive"
)

// Leads reports whether a region in this role holds the epoch: its change
// log is the one the other region follows.
func (r Role) Leads() bool { return r == Active || r == Draining || r == Sealed }

// Store kinds of this package. The region's own state, its failover lease
// and its events are local (never replicated, never rewound); terms and
// reports are replicated, so both regions know the history.
const (
	kindState  store.Kind = "dr.state"
	kindLease  store.Kind = "dr.lease"
	kindEvent  store.Kind = "dr.event"
	kindTerm   store.Kind = "dr.term"   // key: epoch, 20 digits
	kindReport store.Kind = "dr.report" // key: start time (ms, 20 digits) "-" id
)

func init() { store.RegisterLocal(kindState, kindLease, kindEvent) }

// State is a region's disaster-recovery state, kept in its own store under
// a local kind: the peer never sees it as it is (it learns the epoch from
// terms and status calls).
type State struct {
	Region string `json:"region"`
	Role   Role   `json:"role"`
	// Epoch is the highest epoch this region knows of, and ActiveRegion the
	// region that holds it ("" while unknown, on a new secondary).
	Epoch        int64  `json:"epoch"`
	ActiveRegion string `json:"active_region"`
	// HandingOverTo names the region a planned failover moves service to,
	// while this region drains and is sealed.
	HandingOverTo string `json:"handing_over_to,omitempty"`
	// Rejoin is set while this region, which led at FromEpoch, still has to
	// drop what the new leader never received before following it.
	Rejoin *Rejoin `json:"rejoin,omitempty"`
	// LastFence records the last time this region stopped leading because
	// it found a higher epoch, and what it set aside then.
	LastFence *Fence `json:"last_fence,omitempty"`
	Updated   int64  `json:"updated"`
}

// Rejoin is a pending return of a former leader.
type Rejoin struct {
	FromEpoch int64  `json:"from_epoch"`
	Leader    string `json:"leader"`
}

// Fence describes a region's discovery that it had been superseded.
type Fence struct {
	At        int64  `json:"at"`
	FromEpoch int64  `json:"from_epoch"`
	ToEpoch   int64  `json:"to_epoch"`
	By        string `json:"by"`
	// Planned is true when the region had handed over on purpose (it was
	// sealed for a planned failover): nothing is lost then.
	Planned bool `json:"planned"`
	// CommonSeq is the last change both regions share.
	CommonSeq int64     `json:"common_seq"`
	SetAside  *SetAside `json:"set_aside,omitempty"`
}

// SetAside describes the changes a returning region dropped from its log
// because its peer never received them: they are written to File, whole,
// and listed by kind; nothing merges them back silently.
type SetAside struct {
	FromSeq int64          `json:"from_seq"`
	ToSeq   int64          `json:"to_seq"`
	Changes int            `json:"changes"`
	File    string         `json:"file"`
	Kinds   map[string]int `json:"kinds"`
	// Keys lists up to 100 of the documents the changes wrote (kind/key).
	Keys []string `json:"keys,omitempty"`
}

// Term is one epoch: the region that led it and the first sequence number
// it wrote. Terms are replicated: every region knows the history, and a
// region that led an older term finds from it where its log and its
// successor's part.
type Term struct {
	Epoch    int64  `json:"epoch"`
	Region   string `json:"region"`
	StartSeq int64  `json:"start_seq"`
	Started  int64  `json:"started"` // epoch ms
	Planned  bool   `json:"planned"`
	// For an unplanned promotion: the newest change the region knew the
	// former leader had (LeaderSeq) and had not received.
	LeaderSeq int64 `json:"leader_seq,omitempty"`
}

func termKey(epoch int64) string { return fmt.Sprintf("%020d", epoch) }

func loadState(tx store.Tx) (State, bool, error) {
	st, err := store.Get[State](tx, kindState, "state")
	if errors.Is(err, store.ErrNotFound) {
		return State{}, false, nil
	}
	return st, err == nil, err
}

func loadTerms(tx store.Tx) ([]Term, error) {
	terms, err := store.List[Term](tx, kindTerm, "")
	sort.Slice(terms, func(i, j int) bool { return terms[i].Epoch < terms[j].Epoch })
	return terms, err
}

// Terms reads the terms of a store, oldest first.
func Terms(ctx context.Context, st store.Store) ([]Term, error) {
	var out []Term
	err := st.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = loadTerms(tx)
		return err
	})
	return out, err
}

// Event is something an operator should know about: a fence, a promotion,
// a lag above the recovery point objective.
type Event struct {
	Time    int64  `json:"time"`
	Type    string `json:"type"`
	Message string `json:"message"`
}

// maxEvents bounds the events a region keeps.
const maxEvents = 200
