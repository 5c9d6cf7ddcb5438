package autoscale

import (
	"fmt"
	"time"
)

// static keeps the cluster at a fixed size: a cluster with num_workers, and
// the simulator's baselines (at min, at max, and the best size in hindsight).
type static struct {
	size int
}

// NewStatic returns the policy that holds a cluster at n workers.
func NewStatic(n int) Policy { return static{size: max(0, n)} }

func (static) Name() string { return Static }

func (static) Lookback() time.Duration { return 0 }

func (p static) Decide(s Snapshot, _ History, now time.Time) Decision {
	size := s.Size()
	switch {
	case size < p.size:
		return Decision{Target: p.size, Reason: fmt.Sprintf("static: keeping %d workers", p.size)}
	case size > p.size:
		remove := pickForRemoval(s, now, size-p.size)
		if len(remove) == 0 {
			return hold(s)
		}
		return Decision{Target: size - len(remove), Remove: remove, Reason: fmt.Sprintf("static: keeping %d workers", p.size)}
	}
	return hold(s)
}
