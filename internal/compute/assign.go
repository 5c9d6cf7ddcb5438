package compute

import (
	"fmt"
	"sort"
)

// demand is instances a cluster needs for one role.
type demand struct {
	ClusterID string
	Role      string
	PoolID    string // "" when not from a pool
	NodeType  string
	Count     int
	// Since orders demands: older clusters are served first.
	Since int64
}

// grant gives a demand one instance: an idle one of its pool (InstanceID)
// or a new one.
type grant struct {
	ClusterID  string // "" for a pool's own idle instance
	Role       string
	PoolID     string
	NodeType   string
	InstanceID string // set when taking an idle instance
}

// poolState is a pool as assignment sees it.
type poolState struct {
	Pool Pool
	// Idle are the pool's unassigned instances, best first (ready before
	// still cleaning, then longest idle).
	Idle []string
	// Total counts the pool's instances, used and idle.
	Total int
}

// assignment is the outcome of assign.
type assignment struct {
	Grants []grant
	// Waiting says, per cluster, why it waits for instances.
	Waiting map[string]string
	// PoolMissing names, per cluster, a pool it needs that does not exist.
	PoolMissing map[string]string
}

// assign serves demands from pools' idle instances first, then with new
// instances up to each pool's max capacity; beyond it a cluster waits and
// is told why. Then it tops pools up to their min_idle_instances with what
// capacity is left. It is pure.
func assign(demands []demand, pools map[string]*poolState) assignment {
	out := assignment{Waiting: map[string]string{}, PoolMissing: map[string]string{}}
	ds := append([]demand(nil), demands...)
	sort.SliceStable(ds, func(i, j int) bool {
		if ds[i].Since != ds[j].Since {
			return ds[i].Since < ds[j].Since
		}
		return ds[i].Role == "driver" && ds[j].Role != "driver"
	})
	for _, d := range ds {
		if d.PoolID == "" {
			for i := 0; i < d.Count; i++ {
				out.Grants = append(out.Grants, grant{ClusterID: d.ClusterID, Role: d.Role, NodeType: d.NodeType})
			}
			continue
		}
		ps, ok := pools[d.PoolID]
		if !ok || ps.Pool.State != PoolActive {
			out.PoolMissing[d.ClusterID] = d.PoolID
			continue
		}
		for i := 0; i < d.Count; i++ {
			g := grant{ClusterID: d.ClusterID, Role: d.Role, PoolID: d.PoolID, NodeType: ps.Pool.NodeTypeID}
			switch {
			case len(ps.Idle) > 0:
				g.InstanceID = ps.Idle[0]
				ps.Idle = ps.Idle[1:]
			case ps.Pool.MaxCapacity == 0 || ps.Total < ps.Pool.MaxCapacity:
				ps.Total++
			default:
				out.Waiting[d.ClusterID] = fmt.Sprintf("Waiting for instances: instance pool %s (%s) has reached its max capacity of %d instances.",
					ps.Pool.Name, ps.Pool.ID, ps.Pool.MaxCapacity)
				continue
			}
			out.Grants = append(out.Grants, g)
		}
	}
	ids := make([]string, 0, len(pools))
	for id := range pools {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ps := pools[id]
		if ps.Pool.State != PoolActive {
			continue
		}
		for n := len(ps.Idle); n < ps.Pool.MinIdle; n++ {
			if ps.Pool.MaxCapacity > 0 && ps.Total >= ps.Pool.MaxCapacity {
				break
			}
			ps.Total++
			out.Grants = append(out.Grants, grant{PoolID: id, NodeType: ps.Pool.NodeTypeID})
		}
	}
	return out
}

// idleInstance is an unassigned pool instance, for expiry.
type idleInstance struct {
	ID        string
	IdleSince int64
}

// expireIdle returns the idle instances of a pool to delete: those beyond
// min_idle_instances that have been idle for the pool's
// idle_instance_autotermination_minutes (all extra ones at once when it
// is 0), longest idle first; every idle instance of a deleted pool. It is
// pure.
func expireIdle(p Pool, idle []idleInstance, now int64) []string {
	var out []string
	if p.State != PoolActive {
		for _, in := range idle {
			out = append(out, in.ID)
		}
		return out
	}
	extra := len(idle) - p.MinIdle
	if extra <= 0 {
		return nil
	}
	sorted := append([]idleInstance(nil), idle...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].IdleSince < sorted[j].IdleSince })
	limit := int64(p.IdleAutoterminationMinutes) * 60_000
	for _, in := range sorted {
		if extra == 0 {
			break
		}
		if now-in.IdleSince >= limit {
			out = append(out, in.ID)
			extra--
		}
	}
	return out
}
