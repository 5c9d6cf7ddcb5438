package redundancy

// This file holds the layer's decisions, pure and table-tested: which copy
// is the source of an object and which copies need repair, and what a write
// that reached only some copies means for their health.

// Status is what one copy holds of an object.
type Status int

// Statuses of an object on a copy.
const (
	Missing Status = iota
	OK
	Corrupt
)

// View is one copy's view of an object, as the scrubber saw it.
type View struct {
	Healthy bool
	Status  Status
	Gen     uint64
	Sum     [32]byte // the trailer's own hash: equal sums, equal objects
}

// Plan says what to do with an object across its copies.
type Plan struct {
	// Source is the copy to repair from (-1: none).
	Source int
	// Repair lists the copies to overwrite with the source's object.
	Repair []int
	// Delete lists copies whose object was deleted while they were
	// degraded, or that hold only a corrupt leftover with no good copy.
	Delete []int
	// Lost is true when no copy holds a good object though a healthy copy
	// has one: the object is corrupt everywhere.
	Lost bool
}

// PlanObject decides how to bring an object's copies in line. Healthy
// copies are authoritative: the newest good object on a healthy copy wins.
// An object that no healthy copy has was deleted while the other copies
// were degraded. Only when every healthy copy's object is corrupt may a
// degraded copy's good object serve as the source.
func PlanObject(views []View) Plan {
	p := Plan{Source: -1}
	healthyHas := false
	for i, v := range views {
		if v.Healthy && v.Status != Missing {
			healthyHas = true
		}
		if v.Healthy && v.Status == OK && (p.Source < 0 || v.Gen > views[p.Source].Gen) {
			p.Source = i
		}
	}
	if !healthyHas {
		for i, v := range views {
			if v.Status != Missing {
				p.Delete = append(p.Delete, i)
			}
		}
		return p
	}
	if p.Source < 0 {
		for i, v := range views {
			if v.Status == OK && (p.Source < 0 || v.Gen > views[p.Source].Gen) {
				p.Source = i
			}
		}
	}
	if p.Source < 0 {
		p.Lost = true
		return p
	}
	src := views[p.Source]
	for i, v := range views {
		if i != p.Source && (v.Status != OK || v.Sum != src.Sum) {
			p.Repair = append(p.Repair, i)
		}
	}
	return p
}

// WriteOutcome decides what a write that reached some copies means.
// healthy lists the copies that were healthy when the write began, ok which
// of them completed it; quorum is how many must. When the write has its
// quorum, the healthy copies that missed it become degraded. When it has
// not, the write fails, and the copies that did take it become degraded
// instead: the others still agree on the old object, which readers see.
func WriteOutcome(healthy, ok []bool, quorum int) (success bool, degrade []int) {
	n := 0
	for i := range healthy {
		if healthy[i] && ok[i] {
			n++
		}
	}
	success = n >= quorum
	for i := range healthy {
		if healthy[i] && ok[i] != success {
			degrade = append(degrade, i)
		}
	}
	return success, degrade
}
