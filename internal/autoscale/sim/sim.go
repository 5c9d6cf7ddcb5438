// Package sim is a discrete-event simulator of a Spark-like cluster that
// replays a workload trace through an autoscaling policy, calling the same
// autoscale.Policy code the live control loop calls, and measures what the
// policy costs (node-seconds, DBUs, price) and what it does to the work
// (makespan, task waits, job times, tasks lost to scale-down).
//
// The model (docs/autoscaling.md, "Simulator"): jobs arrive at their submit
// times; each is a chain of stages of like tasks; a stage's tasks become
// runnable when the stage before it ends. Workers have task slots; runnable
// tasks go to free slots as Spark's scheduler places them (jobs with fewer
// running tasks first, tasks spread over workers in random order). Every
// tick the simulator takes a snapshot of the signals, asks the policy and
// carries the decision out: new workers come from a pool of warm instances
// or start cold; removed workers are decommissioned gracefully as Spark
// does it (they take no new task and finish the ones they run while their
// shuffle data migrates to the remaining workers; they stop once both are
// done), unless migration is still not done ForceKillAfter after their last
// task, when they are killed and the data not yet across is lost. Uptime
// intervals are priced by the usage package. Given the same seed, a run is
// the same run.
//
// It is not a model of Spark's performance: task times come from the trace
// (with jitter), and data locality, stragglers beyond the jitter, memory
// and failures other than scale-down are not modelled.
package sim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/tandemdata/tandem/internal/autoscale"
	"github.com/tandemdata/tandem/internal/usage"
)

// Env is the simulated environment: what the cluster's machines and
// Spark do, the same for every policy compared.
type Env struct {
	// Tick is how often the policy is asked.
	Tick time.Duration
	// WarmStart is how long a worker takes to join from the pool's idle
	// instances; ColdStart how long from a new instance.
	WarmStart, ColdStart time.Duration
	// PoolMinIdle instances are kept idle and warm (min_idle_instances);
	// a released instance waits warm in the pool for PoolIdleTimeout
	// (idle_instance_autotermination_minutes) before it is terminated.
	// Idle pool instances cost no DBUs.
	PoolMinIdle     int
	PoolIdleTimeout time.Duration
	// DecommissionExit is how long a drained worker takes to stop.
	DecommissionExit time.Duration
	// MigrationBytesPerSecond is how fast a decommissioning worker hands
	// its shuffle blocks to the others.
	MigrationBytesPerSecond float64
	// ForceKillAfter bounds a decommission once the worker runs no task: a
	// worker still migrating so long after its last task ended is killed
	// and its unmigrated shuffle data is lost. Running tasks are never
	// killed: Spark's spark.executor.decommission.forceKillTimeout is unset
	// by default, so a decommissioned executor finishes its tasks however
	// long they run. Zero: never.
	ForceKillAfter time.Duration
	// TaskJitter spreads task times uniformly by this fraction around the
	// trace's mean (0.2: from 80% to 120%).
	TaskJitter float64
	// Seed makes a run repeatable: it drives task times and placement.
	Seed uint64
	// IdleTail is how long an all-purpose cluster stays up after its last
	// job ends (job clusters end with their job).
	IdleTail time.Duration
	// NodeType and ComputeType price the uptime; ComputeType empty: Jobs
	// for job clusters, All-Purpose otherwise. Rates nil: the defaults.
	NodeType    string
	ComputeType usage.ComputeType
	Rates       *usage.Rates
	// DiskBytes is a worker's scratch disk, for the disk-use signal.
	DiskBytes int64
}

// DefaultEnv is the environment the benchmark uses, chosen from the compute
// goals (~5 s from a warm pool, ~20 s cold) and Spark's and Kubernetes'
// defaults (docs/autoscaling.md explains each figure).
func DefaultEnv() Env {
	return Env{
		Tick:                    time.Second,
		WarmStart:               5 * time.Second,
		ColdStart:               20 * time.Second,
		DecommissionExit:        5 * time.Second,
		MigrationBytesPerSecond: 100 << 20,
		ForceKillAfter:          10 * time.Minute,
		TaskJitter:              0.2,
		Seed:                    1,
		IdleTail:                15 * time.Minute,
		NodeType:                "Standard_DS4_v2",
		DiskBytes:               256 << 30,
	}
}

// Config is one run: a cluster, its policy and the environment.
type Config struct {
	Spec autoscale.Spec
	// Policy decides; nil means autoscale.New(Spec).
	Policy autoscale.Policy
	// Label names the run in results; empty means the policy's name.
	Label string
	// InitialWorkers are ready at time zero; zero means Spec.MinWorkers.
	InitialWorkers int
	Env            Env
	// Observe, if set, sees every tick's signals and decision.
	Observe func(autoscale.Snapshot, autoscale.Decision)
}

// Result is what a run measured.
type Result struct {
	Label   string
	Workers string // the bounds, "2-32", or the size of a static cluster
	// NodeSeconds is the billed uptime of every node, driver included,
	// from request to release; WorkerSeconds the workers' share.
	NodeSeconds, WorkerSeconds float64
	DBUs, Cost                 float64
	Currency                   string
	// Makespan runs from the first submission to the last job's end.
	Makespan time.Duration
	// End is when the cluster went away (the last job's end, plus the
	// idle tail on all-purpose clusters).
	End                      time.Duration
	TaskWaitP50, TaskWaitP95 time.Duration
	JobTimeP50, JobTimeP95   time.Duration
	// JobTimes is each job's completion time (end - submit), trace order.
	JobTimes []time.Duration
	// TasksFailed counts tasks killed by a forced decommission: graceful
	// scale-down keeps it at zero. ShuffleLostBytes is shuffle data that
	// left with a killed worker; ShuffleMigratedBytes what was handed on.
	TasksFailed                            int
	ShuffleLostBytes, ShuffleMigratedBytes int64
	ScaleUps, ScaleDowns                   int
	PeakWorkers                            int
	AvgWorkers                             float64
	// PoolIdleSeconds is the instance-seconds spent idle in the pool
	// (no DBUs; the machines still cost their owner).
	PoolIdleSeconds float64
	Tasks           int
	// P95Slowdown is filled in by Compare: the 95th percentile of each
	// job's time over its time on the static cluster at max size.
	P95Slowdown float64
}

// Epoch is the wall time of the trace's second zero, as the policies and
// Observe see it. A round epoch keeps periodic policies' periods aligned.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Run replays the trace through the configured cluster.
func Run(t Trace, cfg Config) (Result, error) {
	s, err := newSimulation(t, cfg)
	if err != nil {
		return Result{}, err
	}
	if err := s.run(); err != nil {
		return Result{}, fmt.Errorf("simulate %s on %s: %w", s.label, t.Name, err)
	}
	return s.result()
}

type worker struct {
	id        autoscale.WorkerID
	state     autoscale.WorkerState
	slots     int
	tasks     []*task
	shuffle   map[*jobRun]int64
	shuffleN  int64
	idleSince time.Duration
	requested time.Duration
	released  bool
	// migFree is when a decommissioning worker's migration has sent what
	// it holds: Spark starts migrating shuffle files as soon as the
	// executor is decommissioned, while its tasks still run, and picks up
	// the files later tasks write in its next rounds.
	migFree time.Duration
}

type task struct {
	job      *jobRun
	w        *worker
	idx      int // in w.tasks
	killed   bool
	duration time.Duration
}

type jobRun struct {
	job      *Job
	order    int
	stage    int
	queued   int           // tasks of the stage not started
	readyAt  time.Duration // when they became runnable
	retries  []time.Duration
	running  int
	left     int // tasks of the stage not finished
	backlog  int // tasks of later stages
	done     bool
	end      time.Duration
	shuffled int64 // bytes the last stage wrote, read by the current one
	holders  map[*worker]bool
}

type evKind uint8

const (
	evArrive evKind = iota
	evTaskEnd
	evReady
	evRelease
	evForceKill
	evPoolRefill
)

type event struct {
	at   time.Duration
	seq  uint64
	kind evKind
	job  *jobRun
	task *task
	w    *worker
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simulation struct {
	trace   Trace
	spec    autoscale.Spec
	decider *autoscale.Decider
	label   string
	env     Env
	observe func(autoscale.Snapshot, autoscale.Decision)
	rates   usage.Rates
	rng     *rand.Rand

	now     time.Duration
	events  eventQueue
	seq     uint64
	workers []*worker
	nextID  int
	jobs    []*jobRun
	active  []*jobRun // jobs with runnable or running tasks
	waits   []float32

	jobsDone  int
	lastEnd   time.Duration
	horizon   time.Duration // set once every job is done
	intervals []usage.Interval

	pool struct {
		idle      []time.Duration
		refilling int
		lastNow   time.Duration
		seconds   float64
	}

	shuffleWritten, shuffleRead int64
	res                         Result
	workerTime                  float64 // integral of size over time, for the average
}

func newSimulation(t Trace, cfg Config) (*simulation, error) {
	if len(t.Jobs) == 0 {
		return nil, fmt.Errorf("trace %s has no jobs", t.Name)
	}
	env := cfg.Env
	if env.Tick <= 0 {
		return nil, fmt.Errorf("the tick must be positive")
	}
	if env.WarmStart < 0 || env.ColdStart < 0 || env.DecommissionExit < 0 || env.ForceKillAfter < 0 || env.IdleTail < 0 || env.PoolIdleTimeout < 0 {
		return nil, fmt.Errorf("durations must not be negative")
	}
	if env.MigrationBytesPerSecond <= 0 {
		return nil, fmt.Errorf("the migration bandwidth must be positive")
	}
	if env.TaskJitter < 0 || env.TaskJitter >= 1 {
		return nil, fmt.Errorf("task jitter must be in [0, 1)")
	}
	if env.PoolMinIdle < 0 {
		return nil, fmt.Errorf("the pool's minimum idle instances must not be negative")
	}
	if err := cfg.Spec.Validate(); err != nil {
		return nil, err
	}
	if cfg.Spec.WorkerSlots == 0 {
		cfg.Spec.WorkerSlots = autoscale.DefaultSlotsPerWorker
	}
	p := cfg.Policy
	if p == nil {
		var err error
		if p, err = autoscale.New(cfg.Spec); err != nil {
			return nil, err
		}
	}
	rates := usage.DefaultRates()
	if env.Rates != nil {
		rates = *env.Rates
	}
	if env.ComputeType == "" {
		env.ComputeType = usage.Jobs
		if cfg.Spec.Kind == autoscale.AllPurpose {
			env.ComputeType = usage.AllPurpose
		}
	}
	if _, _, err := rates.Price(env.NodeType, env.ComputeType, 0); err != nil {
		return nil, err
	}
	s := &simulation{
		trace: t, spec: cfg.Spec, decider: autoscale.NewDecider(p), label: cfg.Label, env: env, rates: rates, observe: cfg.Observe,
		rng:     rand.New(rand.NewPCG(env.Seed, env.Seed^0x9e3779b97f4a7c15)),
		horizon: -1,
	}
	if s.label == "" {
		s.label = p.Name()
	}
	s.res.Workers = fmt.Sprintf("%d-%d", cfg.Spec.MinWorkers, cfg.Spec.MaxWorkers)
	initial := cfg.InitialWorkers
	if initial <= 0 {
		initial = cfg.Spec.MinWorkers
	}
	for range initial {
		w := s.newWorker()
		w.state, w.idleSince = autoscale.Running, 0
	}
	for range env.PoolMinIdle {
		s.pool.idle = append(s.pool.idle, 0)
	}
	for i := range t.Jobs {
		j := &jobRun{job: &t.Jobs[i], order: i, holders: map[*worker]bool{}}
		s.jobs = append(s.jobs, j)
		s.push(event{at: j.job.Submit, kind: evArrive, job: j})
	}
	return s, nil
}

func (s *simulation) push(e event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.events, e)
}

// maxRunSlack bounds a run that cannot finish (a cluster too small to run a
// task, a policy that never grows): the trace's span plus 30 days.
const maxRunSlack = 30 * 24 * time.Hour

func (s *simulation) run() error {
	limit := s.trace.Span() + s.trace.Jobs[0].Submit + maxRunSlack
	nextTick := time.Duration(0)
	// until is the next tick, or the end of the cluster once known.
	until := func() time.Duration {
		if s.horizon >= 0 && s.horizon < nextTick {
			return s.horizon
		}
		return nextTick
	}
	for {
		// Events up to the next tick, in time order; tasks are placed after
		// each instant's events, as Spark's scheduler reacts to them.
		for len(s.events) > 0 && s.events[0].at <= until() {
			at := s.events[0].at
			s.advance(at)
			for len(s.events) > 0 && s.events[0].at == at {
				s.handle(heap.Pop(&s.events).(event))
			}
			s.schedule()
		}
		s.advance(until())
		if s.horizon >= 0 && s.now >= s.horizon {
			break
		}
		if err := s.tick(); err != nil {
			return err
		}
		if s.now > limit {
			return fmt.Errorf("the cluster had not finished the trace %s after its last submission (%d of %d jobs done)", maxRunSlack, s.jobsDone, len(s.jobs))
		}
		nextTick += s.env.Tick
	}
	// The cluster ends: every node goes.
	for _, w := range slices.Clone(s.workers) {
		s.release(w)
	}
	return nil
}

// advance moves the clock, integrating the time-weighted counters.
func (s *simulation) advance(to time.Duration) {
	if to <= s.now {
		return
	}
	dt := (to - s.now).Seconds()
	size := 0
	for _, w := range s.workers {
		if w.state != autoscale.Decommissioning {
			size++
		}
	}
	s.workerTime += float64(size) * dt
	s.pool.seconds += float64(len(s.pool.idle)) * dt
	s.now = to
}

func (s *simulation) handle(e event) {
	switch e.kind {
	case evArrive:
		s.active = append(s.active, e.job)
		for _, st := range e.job.job.Stages[1:] {
			e.job.backlog += st.Tasks
		}
		s.startStage(e.job, 0)
	case evTaskEnd:
		if !e.task.killed {
			s.finishTask(e.task)
		}
	case evReady:
		if !e.w.released && e.w.state == autoscale.Starting {
			e.w.state, e.w.idleSince = autoscale.Running, s.now
		}
	case evRelease:
		if !e.w.released {
			s.completeMigration(e.w)
			s.release(e.w)
		}
	case evForceKill:
		if !e.w.released {
			s.kill(e.w)
		}
	case evPoolRefill:
		s.pool.refilling--
		s.pool.idle = append(s.pool.idle, s.now)
	}
}

func (s *simulation) startStage(j *jobRun, i int) {
	st := j.job.Stages[i]
	j.stage, j.queued, j.left, j.readyAt = i, st.Tasks, st.Tasks, s.now
	if i > 0 {
		j.backlog -= st.Tasks
		s.shuffleRead += j.shuffled
	}
	j.shuffled = 0
}

func (s *simulation) finishTask(t *task) {
	w, j := t.w, t.job
	s.detach(t)
	j.running--
	j.left--
	if mib := j.job.Stages[j.stage].ShuffleMiB; mib > 0 && j.stage < len(j.job.Stages)-1 {
		b := int64(mib * (1 << 20))
		s.addShuffle(w, j, b)
		if w.state == autoscale.Decommissioning {
			w.migFree = max(w.migFree, s.now) + s.migrationTime(b)
		}
		j.shuffled += b
		s.shuffleWritten += b
	}
	if len(w.tasks) == 0 {
		w.idleSince = s.now
		if w.state == autoscale.Decommissioning {
			s.beginMigration(w)
		}
	}
	if j.left > 0 {
		return
	}
	if j.stage+1 < len(j.job.Stages) {
		s.startStage(j, j.stage+1)
		return
	}
	j.done, j.end = true, s.now
	s.jobsDone++
	s.lastEnd = max(s.lastEnd, s.now)
	for h := range j.holders {
		h.shuffleN -= h.shuffle[j]
		delete(h.shuffle, j)
	}
	j.holders = nil
	s.active = slices.DeleteFunc(s.active, func(x *jobRun) bool { return x == j })
	if s.jobsDone == len(s.jobs) {
		s.horizon = s.lastEnd
		if s.spec.Kind == autoscale.AllPurpose {
			s.horizon += s.env.IdleTail
		}
	}
}

func (s *simulation) addShuffle(w *worker, j *jobRun, b int64) {
	if w.shuffle == nil {
		w.shuffle = map[*jobRun]int64{}
	}
	w.shuffle[j] += b
	w.shuffleN += b
	j.holders[w] = true
}

func (s *simulation) detach(t *task) {
	w := t.w
	last := len(w.tasks) - 1
	w.tasks[t.idx] = w.tasks[last]
	w.tasks[t.idx].idx = t.idx
	w.tasks = w.tasks[:last]
}

// schedule places runnable tasks on free slots the way Spark's task
// scheduler does: jobs ordered as the FAIR scheduler orders equal pools
// (fewest running tasks first), each offered the free slots in rounds over
// the workers in random order, one task per worker per round.
func (s *simulation) schedule() {
	var free []*worker
	for _, w := range s.workers {
		if w.state == autoscale.Running && len(w.tasks) < w.slots {
			free = append(free, w)
		}
	}
	if len(free) == 0 {
		return
	}
	var waiting []*jobRun
	for _, j := range s.active {
		if j.queued > 0 || len(j.retries) > 0 {
			waiting = append(waiting, j)
		}
	}
	if len(waiting) == 0 {
		return
	}
	s.rng.Shuffle(len(free), func(a, b int) { free[a], free[b] = free[b], free[a] })
	sort.SliceStable(waiting, func(a, b int) bool {
		if waiting[a].running != waiting[b].running {
			return waiting[a].running < waiting[b].running
		}
		return waiting[a].order < waiting[b].order
	})
	for _, j := range waiting {
		for len(free) > 0 && (j.queued > 0 || len(j.retries) > 0) {
			for _, w := range free {
				if j.queued == 0 && len(j.retries) == 0 {
					break
				}
				s.launch(j, w)
			}
			free = slices.DeleteFunc(free, func(w *worker) bool { return len(w.tasks) >= w.slots })
		}
		if len(free) == 0 {
			return
		}
	}
}

func (s *simulation) launch(j *jobRun, w *worker) {
	ready := j.readyAt
	if n := len(j.retries); n > 0 {
		ready, j.retries = j.retries[0], j.retries[1:]
	} else {
		j.queued--
	}
	s.waits = append(s.waits, float32((s.now - ready).Seconds()))
	mean := j.job.Stages[j.stage].TaskSeconds
	f := 1 + s.env.TaskJitter*(2*s.rng.Float64()-1)
	d := max(time.Millisecond, seconds(mean*f))
	t := &task{job: j, w: w, idx: len(w.tasks), duration: d}
	w.tasks = append(w.tasks, t)
	j.running++
	s.push(event{at: s.now + d, kind: evTaskEnd, task: t})
}

func (s *simulation) newWorker() *worker {
	s.nextID++
	w := &worker{id: autoscale.WorkerID("w" + strconv.Itoa(s.nextID)), state: autoscale.Starting, slots: s.spec.WorkerSlots, requested: s.now}
	s.workers = append(s.workers, w)
	return w
}

func (s *simulation) snapshot() autoscale.Snapshot {
	snap := autoscale.Snapshot{Time: Epoch.Add(s.now), ShuffleWrittenBytes: s.shuffleWritten, ShuffleReadBytes: s.shuffleRead}
	for _, j := range s.active {
		snap.PendingTasks += j.queued + len(j.retries)
		snap.StageBacklog += j.backlog
	}
	snap.Workers = make([]autoscale.Worker, 0, len(s.workers))
	for _, w := range s.workers {
		sw := autoscale.Worker{ID: w.id, State: w.state, Slots: w.slots, ActiveTasks: len(w.tasks), ShuffleBytes: w.shuffleN}
		if w.state != autoscale.Starting {
			if len(w.tasks) == 0 {
				sw.IdleSince = Epoch.Add(w.idleSince)
			}
			// The simulator models task slots, not machines: CPU is the
			// share of busy slots, disk the shuffle data held; memory is
			// not modelled.
			sw.CPU = float64(len(w.tasks)) / float64(w.slots)
			sw.Disk = min(1, float64(w.shuffleN)/float64(max(1, s.env.DiskBytes)))
		}
		snap.Workers = append(snap.Workers, sw)
	}
	return snap
}

func (s *simulation) tick() error {
	s.expirePool()
	snap := s.snapshot()
	d, err := s.decider.Tick(snap, Epoch.Add(s.now))
	if err != nil {
		return fmt.Errorf("at %s: %w", s.now, err)
	}
	size := snap.Size()
	switch step := d.Step(snap); {
	case step > 0:
		s.res.ScaleUps++
		for range step {
			w := s.newWorker()
			delay := s.env.ColdStart
			if s.takeFromPool() {
				delay = s.env.WarmStart
			}
			s.push(event{at: s.now + delay, kind: evReady, w: w})
		}
	case step < 0:
		s.res.ScaleDowns++
		for _, id := range d.Remove {
			s.decommission(s.byID(id))
		}
	}
	s.res.PeakWorkers = max(s.res.PeakWorkers, size, d.Target)
	if s.observe != nil {
		s.observe(snap, d)
	}
	return nil
}

func (s *simulation) byID(id autoscale.WorkerID) *worker {
	for _, w := range s.workers {
		if w.id == id {
			return w
		}
	}
	return nil // Check has made sure it exists
}

// decommission starts a worker's graceful exit: it takes no new task and
// its shuffle data starts migrating now, while its tasks run.
func (s *simulation) decommission(w *worker) {
	w.state = autoscale.Decommissioning
	w.migFree = s.now + s.migrationTime(w.shuffleN)
	if len(w.tasks) == 0 {
		s.beginMigration(w)
	}
}

func (s *simulation) migrationTime(b int64) time.Duration {
	return seconds(float64(b) / s.env.MigrationBytesPerSecond)
}

// beginMigration schedules the exit of a decommissioning worker that runs
// no more tasks: it stops once its shuffle blocks are across (the name is
// kept from when migration waited for the last task), and is killed if
// that takes longer than ForceKillAfter from now.
func (s *simulation) beginMigration(w *worker) {
	s.push(event{at: max(s.now, w.migFree) + s.env.DecommissionExit, kind: evRelease, w: w})
	if s.env.ForceKillAfter > 0 {
		s.push(event{at: s.now + s.env.ForceKillAfter, kind: evForceKill, w: w})
	}
}

// completeMigration moves the shuffle data the worker still holds (jobs may
// have ended meanwhile) to the running workers holding the least.
func (s *simulation) completeMigration(w *worker) {
	if w.shuffleN == 0 {
		return
	}
	var dests []*worker
	for _, o := range s.workers {
		if o.state == autoscale.Running && o != w {
			dests = append(dests, o)
		}
	}
	for _, j := range sortedJobs(w.shuffle) {
		b := w.shuffle[j]
		if len(dests) == 0 {
			s.res.ShuffleLostBytes += b
			continue
		}
		dest := dests[0]
		for _, o := range dests[1:] {
			if o.shuffleN < dest.shuffleN {
				dest = o
			}
		}
		s.addShuffle(dest, j, b)
		s.res.ShuffleMigratedBytes += b
	}
	s.dropShuffle(w)
}

func sortedJobs(m map[*jobRun]int64) []*jobRun {
	js := make([]*jobRun, 0, len(m))
	for j := range m {
		js = append(js, j)
	}
	sort.Slice(js, func(a, b int) bool { return js[a].order < js[b].order })
	return js
}

func (s *simulation) dropShuffle(w *worker) {
	for j := range w.shuffle {
		if j.holders != nil {
			delete(j.holders, w)
		}
	}
	w.shuffle, w.shuffleN = nil, 0
}

// kill ends a decommission that ran out of time: running tasks fail and go
// back to their job's queue; shuffle data not yet migrated is lost.
func (s *simulation) kill(w *worker) {
	for _, t := range w.tasks {
		t.killed = true
		t.job.running--
		t.job.retries = append(t.job.retries, s.now)
		s.res.TasksFailed++
	}
	w.tasks = nil
	s.res.ShuffleLostBytes += w.shuffleN
	s.dropShuffle(w)
	s.release(w)
}

func (s *simulation) release(w *worker) {
	if w.released {
		return
	}
	w.released = true
	s.intervals = append(s.intervals, usage.Interval{
		InstanceID: string(w.id), ClusterID: "sim", NodeTypeID: s.env.NodeType, ComputeType: s.env.ComputeType,
		Start: Epoch.Add(w.requested), End: Epoch.Add(s.now),
	})
	s.workers = slices.DeleteFunc(s.workers, func(x *worker) bool { return x == w })
	// An instance of a pool goes back to it; without a pool it terminates.
	if s.env.PoolMinIdle > 0 || s.env.PoolIdleTimeout > 0 {
		s.pool.idle = append(s.pool.idle, s.now)
	}
}

func (s *simulation) takeFromPool() bool {
	n := len(s.pool.idle)
	if n == 0 {
		return false
	}
	s.pool.idle = s.pool.idle[:n-1]
	if len(s.pool.idle)+s.pool.refilling < s.env.PoolMinIdle {
		s.pool.refilling++
		s.push(event{at: s.now + s.env.ColdStart, kind: evPoolRefill})
	}
	return true
}

// expirePool terminates instances idle in the pool for longer than its
// timeout, beyond the minimum it keeps.
func (s *simulation) expirePool() {
	idle := s.pool.idle
	sort.Slice(idle, func(a, b int) bool { return idle[a] < idle[b] })
	for len(idle) > s.env.PoolMinIdle && s.now-idle[0] >= s.env.PoolIdleTimeout {
		idle = idle[1:]
	}
	s.pool.idle = idle
}

func (s *simulation) result() (Result, error) {
	r := s.res
	r.Label = s.label
	r.End = s.horizon
	r.Tasks = s.trace.Tasks()
	r.Makespan = s.lastEnd - s.trace.Jobs[0].Submit
	r.PoolIdleSeconds = s.pool.seconds
	if s.horizon > 0 {
		r.AvgWorkers = s.workerTime / s.horizon.Seconds()
	}
	driver := usage.Interval{InstanceID: "driver", ClusterID: "sim", NodeTypeID: s.env.NodeType, ComputeType: s.env.ComputeType, Driver: true, Start: Epoch, End: Epoch.Add(s.horizon)}
	rep, err := usage.Compute(append(s.intervals, driver), s.rates, Epoch, Epoch.Add(s.horizon))
	if err != nil {
		return Result{}, err
	}
	r.NodeSeconds, r.DBUs, r.Cost, r.Currency = rep.Total.NodeSeconds, rep.Total.DBUs, rep.Total.Cost, rep.Currency
	r.WorkerSeconds = r.NodeSeconds - s.horizon.Seconds()
	r.TaskWaitP50, r.TaskWaitP95 = quantile32(s.waits, 0.5), quantile32(s.waits, 0.95)
	for _, j := range s.jobs {
		r.JobTimes = append(r.JobTimes, j.end-j.job.Submit)
	}
	sorted := slices.Clone(r.JobTimes)
	slices.Sort(sorted)
	r.JobTimeP50, r.JobTimeP95 = quantileD(sorted, 0.5), quantileD(sorted, 0.95)
	return r, nil
}

// quantile32 is the nearest-rank quantile of seconds, sorting xs.
func quantile32(xs []float32, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return seconds(float64(xs[rank(len(xs), q)]))
}

func quantileD(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[rank(len(sorted), q)]
}

func rank(n int, q float64) int {
	i := int(float64(n)*q+0.999999999) - 1
	return min(max(i, 0), n-1)
}
