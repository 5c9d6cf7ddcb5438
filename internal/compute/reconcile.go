package compute

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// errStale ends a transaction whose plan was made from a record that has
// changed since (an API call got there first): the next tick plans again.
var errStale = errors.New("planned from a stale record")

// maxLaunchFailures ends a cluster start after so many instances failed.
const maxLaunchFailures = 3

// Run runs the reconciler until ctx ends. It wakes on every store commit
// (API calls), on agents' reports and on its tick.
func (s *Service) Run(ctx context.Context) {
	notify, stop := s.Store.Notify()
	defer stop()
	t := time.NewTicker(s.Tick)
	defer t.Stop()
	var lastSync, lastPurge time.Time
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runLogDelivery(ctx)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runAutoscaler(ctx)
	}()
	for {
		if time.Since(lastSync) >= 5*time.Second {
			s.syncProvider(ctx)
			lastSync = time.Now()
		}
		if time.Since(lastPurge) >= 10*time.Minute {
			if err := s.purge(ctx); err != nil && ctx.Err() == nil {
				s.Log.Error("purge", "err", err)
			}
			lastPurge = time.Now()
		}
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("reconcile", "err", err)
		}
		select {
		case <-ctx.Done():
			s.wg.Wait()
			return
		case <-t.C:
		case <-s.wake:
		case <-notify:
		}
		// Let a burst of commits settle into one pass.
		time.Sleep(20 * time.Millisecond)
	}
}

// world is one consistent read of everything the reconciler plans from,
// with the raw records to check for changes at write time.
type world struct {
	clusters  map[string]Cluster
	clRaw     map[string][]byte
	instances map[string]Instance
	inRaw     map[string][]byte
	pools     map[string]Pool
	// busy clusters run tasks.
	busy map[string]bool
	// tasks not yet finished.
	tasks []taskRecord
}

func (s *Service) load(ctx context.Context) (*world, error) {
	w := &world{clusters: map[string]Cluster{}, clRaw: map[string][]byte{}, instances: map[string]Instance{},
		inRaw: map[string][]byte{}, pools: map[string]Pool{}, busy: map[string]bool{}}
	err := s.Store.View(ctx, func(tx store.Tx) error {
		err := tx.Scan(kindCluster, "", "", func(key string, raw json.RawMessage) error {
			var c Cluster
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
			// Terminated clusters need no planning unless they are to be
			// removed.
			if c.active() || c.State == Terminating || c.PermanentDelete {
				w.clusters[key], w.clRaw[key] = c, raw
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Scan(kindInstance, "", "", func(key string, raw json.RawMessage) error {
			var in Instance
			if err := json.Unmarshal(raw, &in); err != nil {
				return err
			}
			w.instances[key], w.inRaw[key] = in, raw
			return nil
		})
		if err != nil {
			return err
		}
		if err := store.ScanPrefix(tx, kindPool, "", func(key string, p Pool) error {
			w.pools[key] = p
			return nil
		}); err != nil {
			return err
		}
		return store.ScanPrefix(tx, kindTask, "", func(_ string, t taskRecord) error {
			if t.State != TaskFinished {
				w.busy[t.ClusterID] = true
				w.tasks = append(w.tasks, t)
			}
			return nil
		})
	})
	return w, err
}

// reconcile plans every cluster and pool once and carries out the plans.
func (s *Service) reconcile(ctx context.Context) error {
	w, err := s.load(ctx)
	if err != nil {
		return err
	}
	now := s.Now()
	nodes := map[string][]Instance{}
	for _, in := range w.instances {
		if in.ClusterID != "" && in.State != InstDeleting {
			nodes[in.ClusterID] = append(nodes[in.ClusterID], in)
		}
	}
	ids := make([]string, 0, len(w.clusters))
	for id := range w.clusters {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	steps := map[string]Step{}
	var demands []demand
	for _, id := range ids {
		c := w.clusters[id]
		if !c.active() && c.State != Terminating && len(nodes[id]) == 0 {
			if c.PermanentDelete {
				s.removeCluster(ctx, w, id)
			}
			continue
		}
		views, busy := s.views(c, nodes[id], now)
		in := Input{Now: now.UnixMilli(), Busy: busy || w.busy[id], ContextID: randomInt63(), MaxLaunchFailures: maxLaunchFailures}
		for _, pid := range []string{c.Spec.InstancePoolID, c.Spec.driverPool()} {
			if p, ok := w.pools[pid]; pid != "" && (!ok || p.State != PoolActive) {
				in.PoolMissing = pid
			}
		}
		st := step(c, views, in)
		steps[id] = st
		if st.Cluster.State == Terminating || !st.Cluster.active() {
			continue
		}
		if st.NeedDriver {
			pool, nt := c.Spec.driverPool(), c.Spec.driverNodeType()
			demands = append(demands, demand{ClusterID: id, Role: wire.RoleDriver, PoolID: pool, NodeType: nt, Count: 1, Since: c.CreatedTime})
		}
		if st.NeedWorkers > 0 {
			demands = append(demands, demand{ClusterID: id, Role: wire.RoleWorker, PoolID: c.Spec.InstancePoolID, NodeType: c.Spec.NodeTypeID,
				Count: st.NeedWorkers, Since: c.CreatedTime})
		}
	}
	pools := s.poolStates(w, now)
	asg := assign(demands, pools)
	grants := map[string][]grant{}
	for _, g := range asg.Grants {
		grants[g.ClusterID] = append(grants[g.ClusterID], g)
	}
	for _, id := range ids {
		st, ok := steps[id]
		if !ok {
			continue
		}
		if err := s.commitCluster(ctx, w, st, grants[id], asg.Waiting[id]); err != nil && !errors.Is(err, errStale) {
			s.Log.Error("reconcile cluster", "cluster_id", id, "err", err)
		}
	}
	if err := s.commitPools(ctx, w, grants[""], now); err != nil && !errors.Is(err, errStale) {
		s.Log.Error("reconcile pools", "err", err)
	}
	s.failLostTasks(ctx, w)
	// Provider work for instances recorded but not yet made, or to delete:
	// also what a crash interrupted.
	w2, err := s.load(ctx)
	if err != nil {
		return err
	}
	for _, in := range w2.instances {
		switch {
		case in.State == InstProvisioning && !in.LaunchFailed:
			s.launch(ctx, in)
		case in.State == InstDeleting:
			s.destroy(ctx, in)
		}
	}
	return nil
}

// views builds the planner's view of a cluster's instances from their
// records and their agents' reports; busy reports Spark applications
// running on the cluster.
func (s *Service) views(c Cluster, insts []Instance, now time.Time) ([]NodeView, bool) {
	var driverSnap *wire.SparkSnapshot
	for _, in := range insts {
		if in.Role == wire.RoleDriver {
			if ob, ok := s.obs.get(in.ID); ok && ob.status.Generation == in.Generation {
				driverSnap = ob.spark
			}
		}
	}
	registered := map[string]bool{}
	busy := false
	if driverSnap != nil {
		for _, w := range driverSnap.Workers {
			registered[w] = true
		}
		// A decommissioning worker stays until the autoscaler releases it.
		for _, w := range driverSnap.Decommissioned {
			registered[w] = true
		}
		busy = len(driverSnap.ActiveApps) > 0
	}
	out := make([]NodeView, 0, len(insts))
	for _, in := range insts {
		v := NodeView{ID: in.ID, Role: in.Role, ClusterGen: in.ClusterGen, Assigned: in.AssignedTime}
		if nt, ok := s.Catalog.nodeType(in.NodeType); ok {
			v.Cores = nt.NumCores
		}
		if in.Role == wire.RoleDriver {
			v.Mismatch = in.PoolID != c.Spec.driverPool() || (in.PoolID == "" && in.NodeType != c.Spec.driverNodeType())
		} else {
			v.Mismatch = in.PoolID != c.Spec.InstancePoolID || (in.PoolID == "" && in.NodeType != c.Spec.NodeTypeID)
		}
		v.LaunchFailed, v.LaunchError = in.LaunchFailed, in.LaunchError
		ob, seen := s.obs.get(in.ID)
		if _, gone := s.goneSet.Load(in.ID); gone {
			v.Lost = true
		}
		if in.State == InstLaunched {
			if !seen {
				since := time.UnixMilli(max(in.LaunchedTime, s.started.UnixMilli()))
				if now.Sub(since) > s.BootTimeout {
					v.LaunchFailed, v.LaunchError = true, fmt.Sprintf("The instance's agent did not connect within %s.", s.BootTimeout)
				}
			} else if now.Sub(ob.seen) > s.LostAfter {
				v.Lost = true
			}
		}
		if seen && ob.status.Generation == in.Generation {
			v.Phase, v.FailureCode, v.Message = ob.status.Phase, ob.status.FailureCode, ob.status.Message
			v.InitScripts = ob.status.InitScripts
			v.MasterURL = ob.status.MasterURL
			v.Registered = ob.status.WorkerID != "" && registered[ob.status.WorkerID]
		}
		out = append(out, v)
	}
	return out, busy
}

// poolStates returns each pool's idle instances and size.
func (s *Service) poolStates(w *world, now time.Time) map[string]*poolState {
	out := map[string]*poolState{}
	for id, p := range w.pools {
		out[id] = &poolState{Pool: p}
	}
	type idle struct {
		id    string
		ready bool
		since int64
	}
	byPool := map[string][]idle{}
	for _, in := range w.instances {
		ps, ok := out[in.PoolID]
		if !ok || in.State == InstDeleting {
			continue
		}
		ps.Total++
		if in.ClusterID != "" || in.LaunchFailed {
			continue
		}
		ob, seen := s.obs.get(in.ID)
		if seen && now.Sub(ob.seen) > s.LostAfter {
			continue // silent: it will be deleted
		}
		ready := seen && ob.status.Generation == in.Generation && ob.status.Phase == wire.PhaseIdle
		byPool[in.PoolID] = append(byPool[in.PoolID], idle{id: in.ID, ready: ready, since: in.IdleSince})
	}
	for pid, list := range byPool {
		sort.Slice(list, func(i, j int) bool {
			if list[i].ready != list[j].ready {
				return list[i].ready
			}
			if list[i].since != list[j].since {
				return list[i].since < list[j].since
			}
			return list[i].id < list[j].id
		})
		for _, in := range list {
			out[pid].Idle = append(out[pid].Idle, in.id)
		}
	}
	return out
}

// sameRaw checks, inside a transaction, that a record is as planned.
func sameRaw(tx store.Tx, kind store.Kind, key string, want []byte) error {
	raw, err := tx.Get(kind, key)
	if errors.Is(err, store.ErrNotFound) {
		if want == nil {
			return nil
		}
		return errStale
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(raw, want) {
		return errStale
	}
	return nil
}

// commitCluster writes one cluster's step in one transaction: its record
// and events, what happens to its instances, and the instances it gets.
func (s *Service) commitCluster(ctx context.Context, w *world, st Step, grants []grant, waiting string) error {
	c := st.Cluster
	id := c.ID
	if c.State == Pending || c.State == Resizing || c.State == Restarting {
		if waiting != c.Waiting {
			c.Waiting = waiting
			if waiting != "" {
				c.StateMessage = waiting
			}
		}
	}
	before, _ := json.Marshal(w.clusters[id])
	after, _ := json.Marshal(c)
	if bytes.Equal(before, after) && len(st.Events) == 0 && len(st.Release) == 0 && len(st.Lost) == 0 &&
		len(st.Reassign) == 0 && len(grants) == 0 {
		return nil
	}
	now := s.now()
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := sameRaw(tx, kindCluster, id, w.clRaw[id]); err != nil {
			return err
		}
		cl := c
		for _, ev := range st.Events {
			cl.EventSeq++
			if err := store.Put(tx, kindEvent, eventKey(id, cl.EventSeq), ev); err != nil {
				return err
			}
		}
		if err := store.Put(tx, kindCluster, id, cl); err != nil {
			return err
		}
		done := map[string]bool{}
		for _, iid := range st.Lost {
			done[iid] = true
			if err := s.releaseInstance(tx, w, iid, false, now); err != nil {
				return err
			}
		}
		for _, iid := range st.Release {
			if done[iid] {
				continue
			}
			done[iid] = true
			if err := s.releaseInstance(tx, w, iid, true, now); err != nil {
				return err
			}
		}
		for _, iid := range st.Reassign {
			if err := sameRaw(tx, kindInstance, iid, w.inRaw[iid]); err != nil {
				return err
			}
			in := w.instances[iid]
			gen, err := tx.NextID("compute.generation")
			if err != nil {
				return err
			}
			in.Generation, in.ClusterGen = gen, cl.Generation
			if err := store.Put(tx, kindInstance, iid, in); err != nil {
				return err
			}
		}
		for _, g := range grants {
			if err := s.grantInstance(tx, w, cl, g, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if st.Result != nil {
		s.auditResult(ctx, c, *st.Result)
	}
	if s.Gateway != nil {
		s.Gateway.Kick()
	}
	return nil
}

// releaseInstance takes an instance off its cluster: back to its pool,
// idle, when it is healthy and its pool still wants it; deleted otherwise.
func (s *Service) releaseInstance(tx store.Tx, w *world, id string, healthy bool, now int64) error {
	if err := sameRaw(tx, kindInstance, id, w.inRaw[id]); err != nil {
		return err
	}
	in := w.instances[id]
	if in.ClusterID == "" {
		return nil
	}
	if err := closeUsage(tx, &in, now); err != nil {
		return err
	}
	in.LastCluster = in.ClusterID
	in.ClusterID, in.Role, in.ClusterGen, in.AssignedTime = "", "", 0, 0
	p, ok := w.pools[in.PoolID]
	if healthy && ok && p.State == PoolActive && in.State != InstProvisioning {
		gen, err := tx.NextID("compute.generation")
		if err != nil {
			return err
		}
		in.Generation, in.IdleSince = gen, now
		if err := openUsage(tx, &in, Usage{PoolID: in.PoolID}, now); err != nil {
			return err
		}
	} else {
		in.State = InstDeleting
	}
	return store.Put(tx, kindInstance, id, in)
}

// grantInstance gives a cluster (or a pool, with no cluster) an instance:
// an idle one of its pool, or a new one recorded for the provider to make.
func (s *Service) grantInstance(tx store.Tx, w *world, c Cluster, g grant, now int64) error {
	gen, err := tx.NextID("compute.generation")
	if err != nil {
		return err
	}
	var in Instance
	if g.InstanceID != "" {
		if err := sameRaw(tx, kindInstance, g.InstanceID, w.inRaw[g.InstanceID]); err != nil {
			return err
		}
		in = w.instances[g.InstanceID]
		if err := closeUsage(tx, &in, now); err != nil {
			return err
		}
	} else {
		nt, _ := s.Catalog.nodeType(g.NodeType)
		in = Instance{ID: newInstanceID(), NodeType: nt.NodeTypeID, PoolID: g.PoolID, State: InstProvisioning, CreatedTime: now}
		if in.NodeType == "" {
			in.NodeType = g.NodeType
		}
	}
	in.Generation, in.IdleSince = gen, 0
	if g.ClusterID != "" {
		in.ClusterID, in.Role, in.ClusterGen, in.AssignedTime = g.ClusterID, g.Role, c.Generation, now
		if err := openUsage(tx, &in, Usage{ClusterID: c.ID, ClusterSource: c.Source, Role: g.Role, PoolID: in.PoolID, RunID: c.RunID,
			ComputeType: ComputeType(c.Source, c.Spec.SparkVersion)}, now); err != nil {
			return err
		}
	} else {
		in.IdleSince = now
		if err := openUsage(tx, &in, Usage{PoolID: in.PoolID}, now); err != nil {
			return err
		}
	}
	return store.Put(tx, kindInstance, in.ID, in)
}

func openUsage(tx store.Tx, in *Instance, u Usage, now int64) error {
	u.InstanceID, u.NodeType, u.StartMillis = in.ID, in.NodeType, now
	key := usageKey(in.ID, now)
	in.UsageKey = key
	return store.Put(tx, kindUsage, key, u)
}

func closeUsage(tx store.Tx, in *Instance, now int64) error {
	if in.UsageKey == "" {
		return nil
	}
	u, err := store.Get[Usage](tx, kindUsage, in.UsageKey)
	if errors.Is(err, store.ErrNotFound) {
		in.UsageKey = ""
		return nil
	}
	if err != nil {
		return err
	}
	u.EndMillis = now
	in.UsageKey = ""
	return store.Put(tx, kindUsage, usageKeyOf(u), u)
}

func usageKeyOf(u Usage) string { return usageKey(u.InstanceID, u.StartMillis) }

// commitPools tops pools up with new idle instances and deletes idle
// instances past their pool's idle timeout (or of a deleted pool).
func (s *Service) commitPools(ctx context.Context, w *world, grants []grant, now time.Time) error {
	idle := map[string][]idleInstance{}
	for _, in := range w.instances {
		if in.PoolID == "" || in.ClusterID != "" || in.State == InstDeleting {
			continue
		}
		idle[in.PoolID] = append(idle[in.PoolID], idleInstance{ID: in.ID, IdleSince: in.IdleSince})
	}
	var expire []string
	for pid, list := range idle {
		p, ok := w.pools[pid]
		if !ok {
			p = Pool{ID: pid, State: PoolDeleted}
		}
		expire = append(expire, expireIdle(p, list, now.UnixMilli())...)
	}
	// Idle instances whose agent went silent, or that could not be made,
	// are deleted too; the pool makes new ones.
	for _, in := range w.instances {
		if in.PoolID == "" || in.ClusterID != "" || in.State == InstDeleting {
			continue
		}
		ob, seen := s.obs.get(in.ID)
		_, gone := s.goneSet.Load(in.ID)
		if in.LaunchFailed || gone || (in.State == InstLaunched && seen && now.Sub(ob.seen) > s.LostAfter) {
			expire = append(expire, in.ID)
		}
	}
	if len(grants) == 0 && len(expire) == 0 {
		return nil
	}
	sort.Strings(expire)
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		done := map[string]bool{}
		for _, id := range expire {
			if done[id] {
				continue
			}
			done[id] = true
			if err := sameRaw(tx, kindInstance, id, w.inRaw[id]); err != nil {
				return err
			}
			in := w.instances[id]
			if err := closeUsage(tx, &in, now.UnixMilli()); err != nil {
				return err
			}
			in.State = InstDeleting
			if err := store.Put(tx, kindInstance, id, in); err != nil {
				return err
			}
			if in.LaunchFailed {
				if err := s.poolError(tx, in); err != nil {
					return err
				}
			}
		}
		for _, g := range grants {
			if err := s.grantInstance(tx, w, Cluster{}, g, now.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && s.Gateway != nil {
		s.Gateway.Kick()
	}
	return err
}

// poolError records a failure to make a pool instance (pool status).
func (s *Service) poolError(tx store.Tx, in Instance) error {
	p, err := store.Get[Pool](tx, kindPool, in.PoolID)
	if err != nil {
		return nil
	}
	p.PendingErrors = append(p.PendingErrors, PendingError{InstanceID: in.ID, Message: in.LaunchError})
	if len(p.PendingErrors) > 10 {
		p.PendingErrors = p.PendingErrors[len(p.PendingErrors)-10:]
	}
	return store.Put(tx, kindPool, p.ID, p)
}

// removeCluster drops a permanently deleted cluster that has terminated:
// its record, events and grants.
func (s *Service) removeCluster(ctx context.Context, w *world, id string) {
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := sameRaw(tx, kindCluster, id, w.clRaw[id]); err != nil {
			return err
		}
		var keys []string
		if err := tx.Scan(kindEvent, id+"/", "", func(key string, _ json.RawMessage) error {
			keys = append(keys, key)
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if err := tx.Delete(kindEvent, k); err != nil {
				return err
			}
		}
		if err := permissions.Delete(tx, "clusters", id); err != nil {
			return err
		}
		if err := deleteIfPresent(tx, kindLogDelivery, id); err != nil {
			return err
		}
		return tx.Delete(kindCluster, id)
	})
	if err != nil && !errors.Is(err, errStale) {
		s.Log.Error("remove cluster", "cluster_id", id, "err", err)
	}
	if err == nil && s.LogDir != "" {
		os.RemoveAll(filepath.Join(s.LogDir, id))
	}
}

// launch has the provider make an instance recorded as provisioning,
// with a certificate issued for it now (a crash before the provider call
// leaves the record, and the next pass issues another).
func (s *Service) launch(ctx context.Context, in Instance) {
	if _, busy := s.launching.LoadOrStore(in.ID, true); busy {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.launching.Delete(in.ID)
		err := s.launchOnce(ctx, in)
		if ctx.Err() != nil || errors.Is(err, errStale) {
			return
		}
		_, uerr := s.Store.Update(ctx, func(tx store.Tx) error {
			cur, gerr := store.Get[Instance](tx, kindInstance, in.ID)
			if gerr != nil || cur.State != InstProvisioning {
				return nil
			}
			if err == nil {
				cur.State, cur.LaunchedTime = InstLaunched, s.now()
			} else {
				cur.LaunchAttempts++
				cur.LaunchError = err.Error()
				cur.LaunchFailed = cur.LaunchAttempts >= 3
			}
			return store.Put(tx, kindInstance, in.ID, cur)
		})
		if err != nil {
			s.Log.Warn("instance launch failed", "instance_id", in.ID, "err", err)
		}
		if uerr != nil && ctx.Err() == nil {
			s.Log.Error("record instance launch", "instance_id", in.ID, "err", uerr)
		}
		s.nudge()
	}()
}

func (s *Service) launchOnce(ctx context.Context, in Instance) error {
	if s.Provider == nil {
		return errors.New("this region has no instance provider")
	}
	iss, err := s.CA.IssueClient(in.ID, 90*24*time.Hour)
	if err != nil {
		return err
	}
	serial, err := certSerial(iss.CertPEM)
	if err != nil {
		return err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := store.Get[Instance](tx, kindInstance, in.ID)
		if err != nil {
			return err
		}
		if cur.State != InstProvisioning {
			return errStale
		}
		cur.CertSerial = serial
		return store.Put(tx, kindInstance, in.ID, cur)
	})
	if err != nil {
		return err
	}
	nt, _ := s.Catalog.nodeType(in.NodeType)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return s.Provider.Create(cctx, provider.Spec{ID: in.ID, NodeType: in.NodeType, Cores: int(nt.NumCores), MemoryMB: nt.MemoryMB,
		ControlURL: s.ControlURL, CAPEM: s.CAPEM, CertPEM: iss.CertPEM, KeyPEM: iss.KeyPEM})
}

// destroy has the provider delete an instance, then removes its record.
func (s *Service) destroy(ctx context.Context, in Instance) {
	if _, busy := s.launching.LoadOrStore(in.ID, true); busy {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.launching.Delete(in.ID)
		if err := s.deleteInstance(ctx, in.ID); err != nil && ctx.Err() == nil {
			s.Log.Warn("delete instance", "instance_id", in.ID, "err", err)
		}
	}()
}

// deleteInstance has the provider delete an instance, then removes its
// record (closing its usage) and what the service keeps of it in memory.
// A provider that no longer knows the instance counts as done.
func (s *Service) deleteInstance(ctx context.Context, id string) error {
	if s.Provider != nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := s.Provider.Delete(cctx, id)
		cancel()
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			return err
		}
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := store.Get[Instance](tx, kindInstance, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := closeUsage(tx, &cur, s.now()); err != nil {
			return err
		}
		return tx.Delete(kindInstance, id)
	})
	if err != nil {
		return fmt.Errorf("remove instance record: %w", err)
	}
	s.obs.forget(id)
	s.goneSet.Delete(id)
	s.asgCache.Delete(id)
	s.forgetGrant(id)
	return nil
}

// syncProvider compares the provider's instances with the store: an
// instance whose processes are gone is lost at once (no need to wait for
// its heartbeats), and one the store does not know is deleted.
func (s *Service) syncProvider(ctx context.Context) {
	if s.Provider == nil {
		return
	}
	list, err := s.Provider.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.Log.Warn("list instances", "err", err)
		}
		return
	}
	known := map[string]Instance{}
	err = s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindInstance, "", func(key string, in Instance) error {
			known[key] = in
			return nil
		})
	})
	if err != nil {
		return
	}
	present := map[string]bool{}
	for _, pi := range list {
		present[pi.ID] = true
		in, ok := known[pi.ID]
		switch {
		case !ok:
			if _, busy := s.launching.Load(pi.ID); !busy {
				s.Log.Info("deleting an instance the store does not know", "instance_id", pi.ID)
				s.destroy(ctx, Instance{ID: pi.ID})
			}
		case !pi.Running && in.State == InstLaunched:
			if _, loaded := s.goneSet.LoadOrStore(pi.ID, true); !loaded {
				s.Log.Info("instance processes are gone", "instance_id", pi.ID)
				s.nudge()
			}
		}
	}
	for id, in := range known {
		if in.State == InstLaunched && !present[id] {
			if _, loaded := s.goneSet.LoadOrStore(id, true); !loaded {
				s.nudge()
			}
		}
	}
}

// auditResult writes the ...Result record of an asynchronous operation,
// paired with its request by requestId.
func (s *Service) auditResult(ctx context.Context, c Cluster, r OpResult) {
	if s.Audit == nil {
		return
	}
	rec := audit.New(s.ResourceID, "clusters", r.Action, s.Now())
	rec.Identity.Email = r.User
	if rec.Identity.Email == "" {
		rec.Identity.Email = principal.SystemName
	}
	rec.Properties.RequestID = r.RequestID
	if rec.Properties.RequestID == "" {
		rec.Properties.RequestID = rec.Properties.LogID
	}
	rec.Properties.RequestParams = map[string]string{"cluster_id": c.ID}
	if c.Spec.ClusterName != "" {
		rec.Properties.RequestParams["cluster_name"] = c.Spec.ClusterName
	}
	rec.Properties.Response.StatusCode = 200
	if r.OK {
		rec.Properties.Response.Result = fmt.Sprintf(`{"cluster_id":%q,"state":%q}`, c.ID, c.State)
	} else {
		rec.Properties.Response.StatusCode = 500
		rec.Properties.Response.ErrorMessage = r.Message
	}
	if err := s.Audit.Append(ctx, rec); err != nil && ctx.Err() == nil {
		s.Log.Error("audit result", "cluster_id", c.ID, "action", r.Action, "err", err)
	}
}

// certSerial returns the serial number of a PEM certificate, in hex.
func certSerial(certPEM []byte) (string, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return "", errors.New("no certificate in PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	return cert.SerialNumber.Text(16), nil
}
