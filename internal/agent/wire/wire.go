// Package wire is the protocol between a node agent and the control plane's
// gateway. The agent dials out (HTTPS with a client certificate issued for
// its instance) and makes two kinds of calls: a long poll that returns the
// instance's desired state and any work for it, and reports that carry its
// status, heartbeats, log chunks, task results and node metrics. Nothing on
// the instance listens for the control plane.
//
// The protocol is level-based: the control plane says what the instance
// should be (an Assignment with a generation), the agent converges and
// reports what it is. A lost message, an agent restart or a control-plane
// restart is repaired by the next poll and report, never by replaying
// commands.
package wire

import (
	"encoding/json"
	"net/http"
)

// Paths of the gateway, outside the public /api/ surface.
const (
	PathPoll   = "/gateway/v1/poll"
	PathReport = "/gateway/v1/report"
	// PathProxy + request id receives the response to a ProxyRequest.
	PathProxy = "/gateway/v1/proxy/"
	// PathAPI + /api/... relays a task's call to the workspace API as the
	// task's principal (see TaskSpec.ID and HeaderTask).
	PathAPI = "/gateway/v1/relay"
)

// HeaderTask names the task on whose behalf a relayed API call is made.
const HeaderTask = "X-Tandem-Task"

// Headers of a proxy response upload.
const (
	HeaderProxyStatus = "X-Tandem-Proxy-Status"
	HeaderProxyHeader = "X-Tandem-Proxy-Header" // JSON of the response header
	HeaderProxyError  = "X-Tandem-Proxy-Error"
)

// Roles of an assigned instance.
const (
	RoleDriver = "driver"
	RoleWorker = "worker"
)

// Phases an instance reports.
const (
	PhaseIdle        = "idle"         // no cluster; clean, ready to be assigned
	PhaseInitScripts = "init_scripts" // running the cluster's init scripts
	PhaseStarting    = "starting"     // Spark processes starting
	PhaseRunning     = "running"      // Spark up (master alive, or worker registered)
	PhaseFailed      = "failed"       // the assignment cannot be carried out
)

// Assignment is what the control plane wants an instance to be. The agent
// carries out the newest generation it has seen: a new generation stops
// whatever the previous one started, cleans the node and starts over.
type Assignment struct {
	Generation int64 `json:"generation"`
	// ClusterID is empty for an idle instance (in a pool).
	ClusterID string `json:"cluster_id,omitempty"`
	Role      string `json:"role,omitempty"`
	// SparkVersion is the cluster's runtime key; Preload is the runtime an
	// idle pooled instance should have ready.
	SparkVersion string `json:"spark_version,omitempty"`
	Preload      string `json:"preload,omitempty"`
	// ClusterName and JobCluster are told to init scripts.
	ClusterName string `json:"cluster_name,omitempty"`
	JobCluster  bool   `json:"job_cluster,omitempty"`
	// SharedDriverMaster, on a driver, is the master its shared driver
	// (the SparkContext tasks attach to) uses instead of the cluster's
	// standalone master: local[N] on a single-node cluster.
	SharedDriverMaster string `json:"shared_driver_master,omitempty"`
	// NodeType is the instance's node type, told to init scripts.
	NodeType string `json:"node_type,omitempty"`
	// SparkConf is written to the node's spark-defaults.conf, read by
	// every Spark process of the node.
	SparkConf map[string]string `json:"spark_conf,omitempty"`
	SparkEnv  map[string]string `json:"spark_env,omitempty"`
	// InitScripts run in order before Spark starts; a failure fails the
	// assignment.
	InitScripts []InitScript `json:"init_scripts,omitempty"`
	// AuthSecret is the cluster's Spark RPC secret (intra-cluster
	// encryption). It lives only in the control plane and in the memory
	// and environment of the cluster's processes.
	AuthSecret string `json:"auth_secret,omitempty"`
	// LocalDiskEncryption encrypts the node's scratch data with a key the
	// agent makes and keeps in memory.
	LocalDiskEncryption bool `json:"local_disk_encryption,omitempty"`
	// LogDelivery: the cluster delivers its logs (cluster_log_conf), so
	// the node also ships its executors' output and the driver's Spark
	// event logs.
	LogDelivery bool `json:"log_delivery,omitempty"`
	// ElasticDisk, when set, puts Spark's scratch space on capacity-bounded
	// volumes that grow while free space runs low (enable_elastic_disk).
	ElasticDisk *ElasticDisk `json:"elastic_disk,omitempty"`
}

// InitScript is one script to run, with its origin for the event log.
type InitScript struct {
	// Source is "global" or "cluster".
	Source string `json:"source"`
	// Name names the script in logs and events: the global script's name,
	// or the cluster script's destination.
	Name string `json:"name"`
	// Kind is the destination kind of a cluster script: workspace, dbfs,
	// volumes, file; empty for global scripts.
	Kind string `json:"kind,omitempty"`
	// Body is the script; empty with Kind "file" (a path on the node).
	Body []byte `json:"body,omitempty"`
	// Path is the node-local path of a "file" script.
	Path string `json:"path,omitempty"`
	// FetchError says why the control plane could not read the script:
	// the node fails it (FAILED_FETCH) without running anything.
	FetchError string `json:"fetch_error,omitempty"`
}

// PollRequest is what the agent sends when it asks for work.
type PollRequest struct {
	// Generation is the newest assignment the agent has.
	Generation int64 `json:"generation"`
	// MasterURL is the driver's master the agent knows (workers).
	MasterURL string `json:"master_url,omitempty"`
	// Tasks are the ids of the tasks the agent knows (running or done).
	Tasks []string `json:"tasks,omitempty"`
	// WaitMillis bounds the poll (0: the server's default).
	WaitMillis int64 `json:"wait_millis,omitempty"`
}

// PollResponse is the work for the agent. An empty response means nothing
// changed during the wait.
type PollResponse struct {
	// Assignment is set when the control plane wants a newer generation.
	Assignment *Assignment `json:"assignment,omitempty"`
	// MasterURL is the cluster's Spark master, for a worker, when it
	// differs from what the agent has. It is apart from the assignment:
	// a worker runs its init scripts while the driver's master starts, and
	// learning the master's address does not start the node over.
	MasterURL string `json:"master_url,omitempty"`
	// StartTasks are tasks to start (idempotent by id).
	StartTasks []TaskSpec `json:"start_tasks,omitempty"`
	// CancelTasks are ids of tasks to stop.
	CancelTasks []string `json:"cancel_tasks,omitempty"`
	// Proxy are HTTP requests to make to the instance's Spark UI.
	Proxy []ProxyRequest `json:"proxy,omitempty"`
	// HeartbeatMillis is how often the agent must report.
	HeartbeatMillis int64 `json:"heartbeat_millis,omitempty"`
	// Exit tells the agent its instance is gone: stop everything and exit.
	Exit bool `json:"exit,omitempty"`
}

// Report is the agent's heartbeat: its status, and what happened since the
// previous report.
type Report struct {
	Status  NodeStatus     `json:"status"`
	Metrics *Metrics       `json:"metrics,omitempty"`
	Logs    []LogChunk     `json:"logs,omitempty"`
	Tasks   []TaskStatus   `json:"tasks,omitempty"`
	Spark   *SparkSnapshot `json:"spark,omitempty"`
}

// ReportResponse acknowledges a report.
type ReportResponse struct {
	// Logs is, per stream, the offset up to which the control plane has
	// kept the stream; the agent resends from there.
	Logs map[string]int64 `json:"logs,omitempty"`
	// Tasks are ids of finished tasks whose result the control plane has
	// kept: the agent may forget them.
	Tasks []string `json:"tasks,omitempty"`
	// DiskEvents is the highest disk event sequence number recorded: the
	// agent forgets the events up to it.
	DiskEvents int64 `json:"disk_events,omitempty"`
	// ScratchGranted is the size the provider has grown the scratch
	// volume to (its filesystem follows); ScratchRefused says why it
	// could not grow it to DiskStatus.WantBytes.
	ScratchGranted int64  `json:"scratch_granted,omitempty"`
	ScratchRefused string `json:"scratch_refused,omitempty"`
}

// NodeStatus is where an instance is in carrying out its assignment.
type NodeStatus struct {
	Generation int64  `json:"generation"`
	Phase      string `json:"phase"`
	Message    string `json:"message,omitempty"`
	// FailureCode is a Databricks termination code when Phase is failed:
	// INIT_SCRIPT_FAILURE, SPARK_STARTUP_FAILURE...
	FailureCode string `json:"failure_code,omitempty"`
	// Host is the address other nodes reach this one at.
	Host string `json:"host,omitempty"`
	// MasterURL and MasterUIPort are set on a driver once its master is up.
	MasterURL    string `json:"master_url,omitempty"`
	MasterUIPort int    `json:"master_ui_port,omitempty"`
	// WorkerID is the Spark worker id of a worker once it has registered.
	WorkerID string `json:"worker_id,omitempty"`
	// InitScripts are the results of this generation's scripts so far.
	InitScripts []ScriptResult `json:"init_scripts,omitempty"`
	// StartedMillis is when the agent started (epoch ms).
	StartedMillis int64 `json:"started_millis,omitempty"`
	// ScratchEncrypted reports that the node's scratch area is encrypted.
	ScratchEncrypted bool `json:"scratch_encrypted,omitempty"`
	// Version is the agent's build version.
	Version string `json:"version,omitempty"`
	// Disk is the node's elastic scratch space, when it has one.
	Disk *DiskStatus `json:"disk,omitempty"`
	// DiskEvents are local storage autoscaling events not yet
	// acknowledged (ReportResponse.DiskEvents).
	DiskEvents []DiskEvent `json:"disk_events,omitempty"`
	// Executors are, on a worker, the executors its Spark worker runs
	// ("<app id>/<executor id>"), which ties the application's executors
	// to instances.
	Executors []string `json:"executors,omitempty"`
	// Decommission is, on a worker asked to decommission (TargetDecommission),
	// DecommissionStarted until its worker runs no executor (blocks
	// migrated, executors exited), then DecommissionDone.
	Decommission string `json:"decommission,omitempty"`
}

// Decommission progress of a worker.
const (
	DecommissionStarted = "started"
	DecommissionDone    = "done"
)

// Init script execution statuses, as Databricks reports them.
const (
	ScriptSucceeded       = "SUCCEEDED"
	ScriptFailedFetch     = "FAILED_FETCH"
	ScriptFailedExecution = "FAILED_EXECUTION"
	ScriptNotExecuted     = "NOT_EXECUTED"
	ScriptSkipped         = "SKIPPED"
)

// ScriptResult is the outcome of one init script on one node.
type ScriptResult struct {
	Source string `json:"source"`
	// Kind is a cluster script's destination kind (workspace, dbfs...).
	Kind         string `json:"kind,omitempty"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	ExitCode     int    `json:"exit_code"`
	DurationMs   int64  `json:"duration_ms"`
	ErrorMessage string `json:"error_message,omitempty"`
	// LogStream names the log stream holding the script's output.
	LogStream string `json:"log_stream,omitempty"`
}

// SparkSnapshot is the driver's view of its Spark master (from the
// master's JSON endpoint).
type SparkSnapshot struct {
	Status string `json:"status"` // ALIVE, STANDBY...
	// Workers are the ids of ALIVE registered workers.
	Workers    []string `json:"workers,omitempty"`
	Cores      int      `json:"cores"`
	CoresUsed  int      `json:"cores_used"`
	ActiveApps []string `json:"active_apps,omitempty"`
	// Decommissioned are the ids of workers the master lists as
	// DECOMMISSIONED: still registered, taking no new executors.
	Decommissioned []string `json:"decommissioned,omitempty"`
	// Apps is the load of the running applications, from each one's
	// monitoring REST API (the autoscaler's signal); read about once a
	// second, so it may be a little older than the master's fields.
	Apps []AppLoad `json:"apps,omitempty"`
	// LoadMillis is when Apps was read (epoch ms).
	LoadMillis int64 `json:"load_millis,omitempty"`
}

// AppLoad is one running Spark application's load.
type AppLoad struct {
	ID string `json:"id"`
	// PendingTasks are runnable tasks of active stages waiting for a slot:
	// Σ(numTasks − numActiveTasks − numCompleteTasks) over active stages.
	PendingTasks int `json:"pending_tasks"`
	// StageBacklog are the tasks of stages waiting for their parents.
	StageBacklog int `json:"stage_backlog"`
	// RunningJobs is the number of jobs not finished.
	RunningJobs int `json:"running_jobs"`
	// FailedTasks and StageRetries are summed over the stages the REST
	// API lists (for tests and the event log: scale-down must not fail a
	// task or make a stage run again).
	FailedTasks  int `json:"failed_tasks"`
	StageRetries int `json:"stage_retries"`
	// ShuffleWriteBytes and ShuffleReadBytes are cumulative.
	ShuffleWriteBytes int64          `json:"shuffle_write_bytes"`
	ShuffleReadBytes  int64          `json:"shuffle_read_bytes"`
	Executors         []ExecutorLoad `json:"executors,omitempty"`
}

// ExecutorLoad is one executor's load (the driver is not listed).
type ExecutorLoad struct {
	ID          string `json:"id"`
	HostPort    string `json:"host_port"`
	Cores       int    `json:"cores"`
	ActiveTasks int    `json:"active_tasks"`
	// ShuffleWriteBytes and ShuffleReadBytes are cumulative.
	ShuffleWriteBytes int64 `json:"shuffle_write_bytes"`
	ShuffleReadBytes  int64 `json:"shuffle_read_bytes"`
	// LiveShuffleBytes estimates the shuffle data the executor holds that
	// a running job may still read: what it wrote since the application
	// last had no running job (Spark's REST API has no live figure).
	LiveShuffleBytes int64 `json:"live_shuffle_bytes"`
	// IdleSinceMillis is when it was first seen without an active task
	// (epoch ms); zero while it runs one.
	IdleSinceMillis int64 `json:"idle_since_millis,omitempty"`
}

// Metrics are a node's resource figures at one moment.
type Metrics struct {
	TimeMillis      int64   `json:"time_millis"`
	Load1           float64 `json:"load1"`
	CPUSeconds      float64 `json:"cpu_seconds"` // of the instance's processes
	MemoryRSSBytes  int64   `json:"memory_rss_bytes"`
	MemoryFreeBytes int64   `json:"memory_free_bytes"`
	DiskUsedBytes   int64   `json:"disk_used_bytes"`
	DiskFreeBytes   int64   `json:"disk_free_bytes"`
	Processes       int     `json:"processes"`

	// The fields below were added for the node metrics service; an older
	// agent leaves them zero.

	// Cores is the instance's CPU count; CPUUsage the host's busy share of
	// all its CPUs (0..1) since the previous figures.
	Cores    int     `json:"cores,omitempty"`
	CPUUsage float64 `json:"cpu_usage,omitempty"`
	// MemoryTotalBytes is the host's memory.
	MemoryTotalBytes int64 `json:"memory_total_bytes,omitempty"`
	// DiskTotalBytes is the size of the file system holding the
	// instance's directory; ScratchUsedBytes what Spark's local
	// directories (shuffle, spill) hold in it.
	DiskTotalBytes   int64 `json:"disk_total_bytes,omitempty"`
	ScratchUsedBytes int64 `json:"scratch_used_bytes,omitempty"`
	// NetReceiveBytes and NetTransmitBytes are the host's counters over
	// every interface but loopback (/proc/net/dev).
	NetReceiveBytes  int64 `json:"net_receive_bytes,omitempty"`
	NetTransmitBytes int64 `json:"net_transmit_bytes,omitempty"`
	// Spark are the figures of the cluster's Spark read on the driver: the
	// master's, and each running application's executors.
	Spark []Sample `json:"spark,omitempty"`
}

// Sample is one figure of a named series. Names are Tandem's metric names
// without the "tandem_" prefix (spark_executor_active_tasks); the control
// plane keeps only names it knows.
type Sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

// Log streams an agent sends. Task streams are "task/<id>/stdout" and
// "task/<id>/stderr"; init script streams "init_scripts/<n>_<name>.stdout.log".
const (
	StreamStdout = "driver/stdout"
	StreamStderr = "driver/stderr"
	StreamLog4j  = "driver/log4j-active.log"
)

// LogChunk is a piece of a log stream at an offset. Chunks are resent
// until acknowledged; writing one twice at its offset is harmless.
type LogChunk struct {
	Stream string `json:"stream"`
	Offset int64  `json:"offset"`
	Data   []byte `json:"data"`
}

// Task kinds.
const (
	// TaskRuntime runs tandem_runtime.task with Spec as its spec file.
	TaskRuntime = "runtime"
	// TaskSparkSubmit runs spark-submit in client mode with Args.
	TaskSparkSubmit = "spark-submit"
)

// TaskSpec is work to run on the driver against the cluster's Spark.
type TaskSpec struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Spec is the tandem_runtime spec (TaskRuntime); the agent adds the
	// Spark master, the API socket and the result file.
	Spec json.RawMessage `json:"spec,omitempty"`
	// Args are spark-submit's arguments (TaskSparkSubmit).
	Args []string `json:"args,omitempty"`
	// Files are written in the task's directory before it starts.
	Files map[string][]byte `json:"files,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	// TimeoutSeconds stops the task after so long (0: no limit).
	TimeoutSeconds int64 `json:"timeout_seconds,omitempty"`
}

// Task states.
const (
	TaskRunning = "running"
	TaskDone    = "done"
)

// TaskStatus is what the agent knows of a task.
type TaskStatus struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	ExitCode int    `json:"exit_code"`
	// Result is the runtime's result document (TaskRuntime).
	Result json.RawMessage `json:"result,omitempty"`
	// Error says why the task could not run or was stopped.
	Error         string `json:"error,omitempty"`
	StartedMillis int64  `json:"started_millis,omitempty"`
	EndedMillis   int64  `json:"ended_millis,omitempty"`
}

// Proxy targets.
const (
	// TargetSparkUI is the master's web UI on the driver (which reverse
	// proxies the workers' and applications' UIs).
	TargetSparkUI = "spark-ui"
	// TargetDecommission, on a worker, decommissions its Spark worker
	// (SIGPWR: Spark's graceful decommissioning, blocks migrate to peers)
	// and answers 200 at once; progress is reported in NodeStatus.
	// Idempotent.
	TargetDecommission = "decommission"
)

// ProxyRequest is an HTTP request for the agent to make to a local UI.
type ProxyRequest struct {
	ID     string      `json:"id"`
	Target string      `json:"target"`
	Method string      `json:"method"`
	Path   string      `json:"path"` // with the query
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// ElasticDisk configures an instance's local storage autoscaling: Spark's
// scratch space starts with FirstVolumeBytes and gains VolumeBytes each
// time its free space falls below FreeBelowBytes, up to MaxVolumes volumes.
type ElasticDisk struct {
	FirstVolumeBytes int64 `json:"first_volume_bytes"`
	VolumeBytes      int64 `json:"volume_bytes"`
	MaxVolumes       int   `json:"max_volumes"`
	FreeBelowBytes   int64 `json:"free_below_bytes"`
}

// DiskStatus is a node's elastic scratch space now.
type DiskStatus struct {
	Volumes   int    `json:"volumes"`
	SizeBytes int64  `json:"size_bytes"`
	FreeBytes int64  `json:"free_bytes"`
	Path      string `json:"path,omitempty"`
	// WantBytes asks the instance's provider to grow the scratch volume
	// to this size (instances whose volume the provider grows; 0: no
	// request). ReportResponse.ScratchGranted or ScratchRefused answers.
	WantBytes int64 `json:"want_bytes,omitempty"`
}

// Disk event types (Databricks' cluster event types).
const (
	DiskExpanded     = "EXPANDED_DISK"
	DiskFailedExpand = "FAILED_TO_EXPAND_DISK"
	DiskDidNotExpand = "DID_NOT_EXPAND_DISK"
)

// DiskEvent is one local storage autoscaling event of a node.
type DiskEvent struct {
	// Seq increases with every event of the agent (acknowledgement).
	Seq        int64  `json:"seq"`
	TimeMillis int64  `json:"time_millis"`
	ClusterID  string `json:"cluster_id"`
	Type       string `json:"type"`
	// Reason says why the disk did not or could not expand.
	Reason           string `json:"reason,omitempty"`
	DiskSize         int64  `json:"disk_size"`
	PreviousDiskSize int64  `json:"previous_disk_size,omitempty"`
	FreeSpace        int64  `json:"free_space"`
}
