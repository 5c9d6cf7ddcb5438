package compute

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/autoscale"
	"github.com/tandemdata/tandem/internal/store"
)

// The live autoscaler: every AutoscaleTick, for each running autoscaling
// cluster, it builds an autoscale.Snapshot from what the agents report
// (the driver: its applications' load from Spark's REST API; the workers:
// the executors they run, their node metrics, their decommission
// progress), runs the cluster's autoscale.Decider and carries the decision
// out: an upsize through SetTargetWorkers; a downsize by decommissioning
// the chosen workers (Spark migrates their shuffle and cached blocks to
// peers, their executors finish and exit) and releasing each instance once
// its worker runs no executor. It runs inside Run, so only while the region
// leads.

// Event types of the live autoscaler (Databricks' EventType values).
const (
	EvAutoscalingStatsReport = "AUTOSCALING_STATS_REPORT"
	EvDecommissionStarted    = "DECOMMISSION_STARTED"
	EvDecommissionEnded      = "DECOMMISSION_ENDED"
)

// Spark configuration an autoscaling cluster runs with (unless its
// spark_conf says otherwise): graceful decommissioning with shuffle and
// RDD block migration.
var decommissionConf = map[string]string{
	"spark.decommission.enabled":                       "true",
	"spark.storage.decommission.enabled":               "true",
	"spark.storage.decommission.shuffleBlocks.enabled": "true",
	"spark.storage.decommission.rddBlocks.enabled":     "true",
	// A decommissioning executor exits only after a full migration round
	// that ends after its last task; rounds are 30 s apart by default,
	// which a released-at-last worker is billed for.
	"spark.storage.decommission.replicationReattemptInterval": "5s",
}

const (
	// defaultAutoscaleTick is how often the loop decides.
	defaultAutoscaleTick = time.Second
	// decommissionDeadline: a worker still holding executors so long after
	// it last ran a task is released anyway (its unmigrated blocks are
	// then lost). It never cuts a running task short: Spark's
	// spark.executor.decommission.forceKillTimeout is unset by default, so
	// a decommissioned executor finishes its tasks however long they run;
	// the deadline only bounds a migration that does not end. The
	// simulator's force-kill deadline, the Kubernetes cluster autoscaler's
	// max-graceful-termination-sec.
	decommissionDeadline = 10 * time.Minute
	// statsEvery is how often a cluster's AUTOSCALING_STATS_REPORT is
	// logged when no decision is taken.
	statsEvery = 5 * time.Minute
)

// scaler is the autoscaler's memory of one cluster.
type scaler struct {
	gen     int64
	specKey string
	decider *autoscale.Decider
	// decom are workers being decommissioned, with when it started;
	// queue are workers chosen to go, waiting for their turn. Workers that
	// wrote shuffle data decommission together; any other worker alone
	// (nextDecommissions says why).
	decom map[string]time.Time
	queue []string
	// lastBusy is when each worker was last seen running a task.
	lastBusy   map[string]time.Time
	lastReport time.Time
	lastTarget int
}

// workerObs is what the control plane knows of one worker of a cluster.
type workerObs struct {
	ID string
	// Ready: its Spark worker is registered with the master (alive or
	// decommissioned); otherwise it is starting.
	Ready     bool
	Executors []string // "<app>/<executor>"
	Assigned  time.Time
	LastBusy  time.Time
	Metrics   *wire.Metrics
}

// buildSnapshot maps the observed state of a cluster into the policies'
// signals. Workers wanted but without an instance yet (missing) count as
// starting, so a policy does not ask for them twice. Pure.
func buildSnapshot(now time.Time, slots int, workers []workerObs, missing int, decom map[string]time.Time, apps []wire.AppLoad) autoscale.Snapshot {
	type execLoad struct {
		active    int
		live      int64
		idleSince time.Time
	}
	load := map[string]execLoad{}
	snap := autoscale.Snapshot{Time: now}
	for _, a := range apps {
		snap.PendingTasks += a.PendingTasks
		snap.StageBacklog += a.StageBacklog
		snap.ShuffleWrittenBytes += a.ShuffleWriteBytes
		snap.ShuffleReadBytes += a.ShuffleReadBytes
		for _, e := range a.Executors {
			el := execLoad{active: e.ActiveTasks, live: e.LiveShuffleBytes}
			if e.IdleSinceMillis > 0 {
				el.idleSince = time.UnixMilli(e.IdleSinceMillis)
			}
			load[a.ID+"/"+e.ID] = el
		}
	}
	for _, w := range workers {
		aw := autoscale.Worker{ID: autoscale.WorkerID(w.ID), Slots: slots}
		switch {
		case !decom[w.ID].IsZero():
			aw.State = autoscale.Decommissioning
		case !w.Ready:
			aw.State = autoscale.Starting
		default:
			aw.State = autoscale.Running
		}
		idle := w.Assigned
		if w.LastBusy.After(idle) {
			idle = w.LastBusy
		}
		for _, id := range w.Executors {
			el, ok := load[id]
			if !ok {
				continue
			}
			aw.ActiveTasks += el.active
			aw.ShuffleBytes += el.live
			if el.idleSince.After(idle) {
				idle = el.idleSince
			}
		}
		if aw.ActiveTasks == 0 {
			aw.IdleSince = idle
		}
		if m := w.Metrics; m != nil {
			if t := m.MemoryRSSBytes + m.MemoryFreeBytes; t > 0 {
				aw.Memory = float64(m.MemoryRSSBytes) / float64(t)
			}
			if t := m.DiskUsedBytes + m.DiskFreeBytes; t > 0 {
				aw.Disk = float64(m.DiskUsedBytes) / float64(t)
			}
		}
		snap.Workers = append(snap.Workers, aw)
	}
	for i := range missing {
		snap.Workers = append(snap.Workers, autoscale.Worker{ID: autoscale.WorkerID(fmt.Sprintf("pending-%d", i+1)), State: autoscale.Starting, Slots: slots})
	}
	return snap
}

// decommissionFinished returns the decommissioning workers that may be
// released at now: their agent says no executor is left, they are gone
// from the cluster, or the deadline has passed since the later of the
// decommission's start and the worker's last task (lastBusy). Pure.
func decommissionFinished(now time.Time, decom map[string]time.Time, lastBusy map[string]time.Time, progress map[string]string) []string {
	var out []string
	for id, since := range decom {
		if b := lastBusy[id]; b.After(since) {
			since = b
		}
		p, present := progress[id]
		if !present || p == wire.DecommissionDone || now.Sub(since) >= decommissionDeadline {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// nextDecommissions drops queued workers that are gone and returns the
// workers to decommission now (none while a decommission is under way)
// and the queue left after them. Pure.
//
// When the first queued worker wrote shuffle data (wrote), every queued
// worker that did goes with it; otherwise it goes alone. Why, from Spark
// 4.1's source: a decommissioning executor migrates to the peers the
// driver's BlockManagerMasterEndpoint.getPeers returns, which leaves out
// the block managers in decommissioningBlockManagerSet; an executor
// decommissioned by SIGPWR is put in that set when it tells the driver, so
// two executors signalled together may briefly see each other as peers.
// A block sent to a peer that is already decommissioning is refused
// (BlockSavedOnDecommissionedBlockManagerException) and queued again
// without counting as a failure (BlockManagerDecommissioner), so nothing
// is lost; a block accepted by a peer just before its own decommission
// began is a local shuffle file there, which the peer's own migration
// rounds (every replicationReattemptInterval) send on. What can lose a
// block is a peer that leaves before a round sees it: an executor exits
// only after a migration round that found nothing left, and one holding
// shuffle files of its own needs a second round for that, at least
// replicationReattemptInterval (5 s) after its decommission began, by
// which time its peers' first uploads to it are long done. An executor
// holding nothing can exit after its first round, a second after it was
// signalled, so it could leave with a block a batch-mate sent it: such
// workers go one at a time. Having written shuffle data is read from
// Spark's cumulative shuffle-write figure: the files stay until the
// application ends or the driver's ContextCleaner drops the shuffle.
func nextDecommissions(queue []string, underWay int, progress map[string]string, wrote map[string]bool) (batch, rest []string) {
	queue = slices.DeleteFunc(slices.Clone(queue), func(id string) bool { _, ok := progress[id]; return !ok })
	if underWay > 0 || len(queue) == 0 {
		return nil, queue
	}
	if !wrote[queue[0]] {
		return queue[:1], queue[1:]
	}
	for _, id := range queue {
		if wrote[id] {
			batch = append(batch, id)
		} else {
			rest = append(rest, id)
		}
	}
	return batch, rest
}

// wroteShuffle reports whether any of a worker's executors
// ("<app>/<executor>") has written shuffle data, by Spark's cumulative
// figure. Pure.
func wroteShuffle(executors []string, apps []wire.AppLoad) bool {
	for _, a := range apps {
		for _, e := range a.Executors {
			if e.ShuffleWriteBytes > 0 && slices.Contains(executors, a.ID+"/"+e.ID) {
				return true
			}
		}
	}
	return false
}

// autoscaleSpec reads a cluster's autoscaling spec.
func (s *Service) autoscaleSpec(c Cluster) (autoscale.Spec, string, error) {
	kind := autoscale.AllPurpose
	if c.Source == SourceJob {
		kind = autoscale.JobCluster
	}
	slots := 0
	if nt, ok := s.Catalog.nodeType(c.Spec.NodeTypeID); ok {
		cpus := 1
		if v, err := strconv.Atoi(strings.TrimSpace(c.Spec.SparkConf["spark.task.cpus"])); err == nil && v > 0 {
			cpus = v
		}
		slots = max(1, int(nt.NumCores)/cpus)
	}
	a := c.Spec.Autoscale
	spec, err := autoscale.SpecFromCluster(a.MinWorkers, a.MaxWorkers, kind, slots, c.Spec.SparkConf)
	key := fmt.Sprintf("%d/%d/%s/%d/%s/%s/%s", a.MinWorkers, a.MaxWorkers, kind, slots, c.Spec.SparkConf[autoscale.ConfPolicy],
		c.Spec.SparkConf[autoscale.ConfWindowDown], c.Spec.SparkConf[autoscale.ConfFirstStepUp])
	return spec, key, err
}

// runAutoscaler ticks every autoscaling cluster until ctx ends.
func (s *Service) runAutoscaler(ctx context.Context) {
	every := s.AutoscaleTick
	if every <= 0 {
		every = defaultAutoscaleTick
	}
	t := time.NewTicker(every)
	defer t.Stop()
	scalers := map[string]*scaler{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.autoscaleOnce(ctx, scalers); err != nil && ctx.Err() == nil {
			s.Log.Warn("autoscale", "err", err)
		}
	}
}

// autoscaleOnce ticks each running autoscaling cluster once.
func (s *Service) autoscaleOnce(ctx context.Context, scalers map[string]*scaler) error {
	var clusters []Cluster
	insts := map[string][]Instance{}
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if err := store.ScanPrefix(tx, kindCluster, "", func(_ string, c Cluster) error {
			if c.Spec.Autoscale != nil && (c.State == Running || c.State == Resizing) && !c.PermanentDelete {
				clusters = append(clusters, c)
			}
			return nil
		}); err != nil {
			return err
		}
		return store.ScanPrefix(tx, kindInstance, "", func(_ string, in Instance) error {
			if in.ClusterID != "" && in.State != InstDeleting {
				insts[in.ClusterID] = append(insts[in.ClusterID], in)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, c := range clusters {
		live[c.ID] = true
		if err := s.autoscaleCluster(ctx, c, insts[c.ID], scalers); err != nil && ctx.Err() == nil {
			s.Log.Warn("autoscale cluster", "cluster_id", c.ID, "err", err)
		}
	}
	for id := range scalers {
		if !live[id] {
			delete(scalers, id)
		}
	}
	return nil
}

func (s *Service) autoscaleCluster(ctx context.Context, c Cluster, insts []Instance, scalers map[string]*scaler) error {
	now := s.Now()
	spec, key, err := s.autoscaleSpec(c)
	if err != nil {
		return err
	}
	sc := scalers[c.ID]
	if sc == nil || sc.gen != c.Generation {
		p, err := autoscale.New(spec)
		if err != nil {
			return err
		}
		sc = &scaler{gen: c.Generation, specKey: key, decider: autoscale.NewDecider(p), decom: map[string]time.Time{},
			lastBusy: map[string]time.Time{}, lastReport: now, lastTarget: c.TargetWorkers}
		scalers[c.ID] = sc
	} else if sc.specKey != key {
		p, err := autoscale.New(spec)
		if err != nil {
			return err
		}
		sc.decider.SetPolicy(p)
		sc.specKey = key
	}

	// What the driver and the workers report.
	var driverSnap *wire.SparkSnapshot
	var workers []Instance
	for _, in := range insts {
		if in.Role == wire.RoleDriver {
			if ob, ok := s.obs.get(in.ID); ok && ob.status.Generation == in.Generation {
				driverSnap = ob.spark
			}
		} else {
			workers = append(workers, in)
		}
	}
	if driverSnap == nil {
		return nil
	}
	registered := map[string]bool{}
	for _, w := range driverSnap.Workers {
		registered[w] = true
	}
	for _, w := range driverSnap.Decommissioned {
		registered[w] = true
	}
	var obs []workerObs
	progress := map[string]string{}
	for _, in := range workers {
		wo := workerObs{ID: in.ID, Assigned: time.UnixMilli(in.AssignedTime), LastBusy: sc.lastBusy[in.ID]}
		if ob, ok := s.obs.get(in.ID); ok && ob.status.Generation == in.Generation {
			wo.Ready = in.ClusterGen == c.Generation && ob.status.Phase == wire.PhaseRunning && registered[ob.status.WorkerID]
			wo.Executors = ob.status.Executors
			wo.Metrics = ob.metrics
			progress[in.ID] = ob.status.Decommission
		} else {
			progress[in.ID] = ""
		}
		obs = append(obs, wo)
		// A worker decommissioned before this leader took over.
		if p := progress[in.ID]; p != "" && sc.decom[in.ID].IsZero() {
			sc.decom[in.ID] = now
		}
	}
	sort.Slice(obs, func(i, j int) bool { return obs[i].ID < obs[j].ID })

	// Release the workers whose decommission is over.
	if done := decommissionFinished(now, sc.decom, sc.lastBusy, progress); len(done) > 0 {
		present := 0
		for _, id := range done {
			if _, ok := progress[id]; ok {
				present++
			}
		}
		if _, err := s.SetTargetWorkers(ctx, c.ID, c.TargetWorkers-present, done, CauseAutoscale); err != nil {
			return err
		}
		for _, id := range done {
			delete(sc.decom, id)
			delete(sc.lastBusy, id)
			s.clusterEvent(ctx, c.ID, EvDecommissionEnded, EventDetails{InstanceID: id})
		}
		return nil // the cluster changed: decide on the next tick
	}

	// Start the next queued decommissions once none is under way.
	wrote := map[string]bool{}
	for _, w := range obs {
		wrote[w.ID] = wroteShuffle(w.Executors, driverSnap.Apps)
	}
	var batch []string
	batch, sc.queue = nextDecommissions(sc.queue, len(sc.decom), progress, wrote)
	// A batch is signalled at once, not one agent after another (each
	// answers after signalling its executors, then its worker a second
	// later): its executors are then marked as decommissioning at the
	// driver as nearly together as SIGPWR allows.
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	for i, id := range batch {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.decommission(ctx, id) }()
	}
	wg.Wait()
	for i, id := range batch {
		if err := errs[i]; err != nil {
			s.Log.Warn("decommission", "cluster_id", c.ID, "instance_id", id, "err", err)
			sc.queue = append(sc.queue, id) // try again on a later tick
			continue
		}
		sc.decom[id] = now
		s.clusterEvent(ctx, c.ID, EvDecommissionStarted, EventDetails{InstanceID: id})
	}

	leaving := map[string]time.Time{}
	for id, t := range sc.decom {
		leaving[id] = t
	}
	for _, id := range sc.queue {
		leaving[id] = now
	}
	missing := max(0, c.TargetWorkers-len(workers))
	snap := buildSnapshot(now, spec.WorkerSlots, obs, missing, leaving, driverSnap.Apps)
	for _, w := range snap.Workers {
		if w.ActiveTasks > 0 {
			sc.lastBusy[string(w.ID)] = now
		}
	}
	dec, err := sc.decider.Tick(snap, now)
	if err != nil {
		return err
	}
	size := snap.Size()
	switch {
	case dec.Target > size:
		target, err := s.SetTargetWorkers(ctx, c.ID, dec.Target+len(leaving), nil, CauseAutoscale)
		if err != nil {
			return err
		}
		s.statsReport(ctx, c.ID, sc, now, size, target-len(leaving), dec.Reason)
	case len(dec.Remove) > 0:
		for _, id := range dec.Remove {
			sc.queue = append(sc.queue, string(id))
		}
		s.statsReport(ctx, c.ID, sc, now, size, dec.Target, dec.Reason)
	default:
		if now.Sub(sc.lastReport) >= statsEvery {
			s.statsReport(ctx, c.ID, sc, now, size, size, "")
		}
	}
	return nil
}

// decommission asks a worker's agent to decommission its Spark worker.
func (s *Service) decommission(ctx context.Context, instanceID string) error {
	if s.Gateway == nil {
		return fmt.Errorf("no gateway to reach the agent")
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	status, _, body, err := s.Gateway.Proxy(pctx, instanceID, wire.ProxyRequest{Target: wire.TargetDecommission, Method: "POST", Path: "/"})
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("the agent answered %d: %s", status, body)
	}
	return nil
}

// statsReport logs an AUTOSCALING_STATS_REPORT.
func (s *Service) statsReport(ctx context.Context, clusterID string, sc *scaler, now time.Time, current, target int, reason string) {
	sc.lastReport, sc.lastTarget = now, target
	s.clusterEvent(ctx, clusterID, EvAutoscalingStatsReport, EventDetails{Cause: CauseAutoscale, CurrentNumWorkers: current,
		TargetNumWorkers: target, AutoscalingReason: reason})
}

// clusterEvent logs one event in a cluster's event log.
func (s *Service) clusterEvent(ctx context.Context, clusterID, typ string, d EventDetails) {
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := getCluster(tx, clusterID)
		if err != nil {
			return err
		}
		if err := s.putEvent(tx, &c, typ, d); err != nil {
			return err
		}
		return store.Put(tx, kindCluster, c.ID, c)
	})
	if err != nil && ctx.Err() == nil {
		s.Log.Warn("cluster event", "cluster_id", clusterID, "type", typ, "err", err)
	}
}

// withDecommission adds the decommissioning configuration to an
// autoscaling cluster's Spark conf, keeping what its spec sets.
func withDecommission(conf map[string]string, spec ClusterSpec) {
	if spec.Autoscale == nil {
		return
	}
	for k, v := range decommissionConf {
		if _, ok := spec.SparkConf[k]; !ok {
			conf[k] = v
		}
	}
}
