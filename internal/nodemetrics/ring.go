package nodemetrics

// entry is one point of a node's history: when (ms since the epoch),
// the cluster the node served then and its role in it, and the
// historyNames vector.
type entry struct {
	at      int64
	cluster string
	role    string
	values  []float64
}

// ring is a node's history: at most cap entries, the oldest overwritten
// first, at least step milliseconds apart (a report closer than half a
// step to the newest entry replaces it, so a faster agent does not shorten
// the time the ring covers).
type ring struct {
	entries []entry
	start   int // index of the oldest entry
	n       int
	step    int64
}

func newRing(capacity int, stepMillis int64) *ring {
	return &ring{entries: make([]entry, capacity), step: stepMillis}
}

// add appends e, which must not be older than the newest entry.
func (r *ring) add(e entry) {
	if len(r.entries) == 0 {
		return
	}
	if r.n > 0 {
		last := &r.entries[(r.start+r.n-1)%len(r.entries)]
		if e.at < last.at {
			return
		}
		if e.at-last.at < r.step/2 {
			*last = e
			return
		}
	}
	if r.n < len(r.entries) {
		r.entries[(r.start+r.n)%len(r.entries)] = e
		r.n++
		return
	}
	r.entries[r.start] = e
	r.start = (r.start + 1) % len(r.entries)
}

// each calls fn on the entries from oldest to newest.
func (r *ring) each(fn func(e entry)) {
	for i := 0; i < r.n; i++ {
		fn(r.entries[(r.start+i)%len(r.entries)])
	}
}

// newest returns the newest entry's time (0 when empty).
func (r *ring) newest() int64 {
	if r.n == 0 {
		return 0
	}
	return r.entries[(r.start+r.n-1)%len(r.entries)].at
}
