package compute

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Store kinds owned by compute.
const (
	kindCluster  = "compute.cluster"
	kindEvent    = "compute.event"    // <cluster id>/<20-digit seq>
	kindInstance = "compute.instance" // instance id
	kindPool     = "compute.pool"
	kindTask     = "compute.task"   // task id
	kindUsage    = "compute.usage"  // <instance id>/<20-digit start ms>
	kindJobKey   = "compute.jobkey" // job cluster creation key -> cluster id
)

// Cluster states, as Databricks names them.
const (
	Pending     = "PENDING"
	Running     = "RUNNING"
	Restarting  = "RESTARTING"
	Resizing    = "RESIZING"
	Terminating = "TERMINATING"
	Terminated  = "TERMINATED"
	Error       = "ERROR"
)

// Cluster sources.
const (
	SourceUI  = "UI"
	SourceAPI = "API"
	SourceJob = "JOB"
)

// AutoScale is the autoscaling range of a cluster.
type AutoScale struct {
	MinWorkers int `json:"min_workers"`
	MaxWorkers int `json:"max_workers"`
}

// StorageInfo is a destination: an init script's or a log's.
type StorageInfo struct {
	Destination string `json:"destination"`
}

// InitScriptInfo is one cluster-scoped init script; exactly one
// destination kind is set.
type InitScriptInfo struct {
	Workspace *StorageInfo    `json:"workspace,omitempty"`
	Dbfs      *StorageInfo    `json:"dbfs,omitempty"`
	Volumes   *StorageInfo    `json:"volumes,omitempty"`
	File      *StorageInfo    `json:"file,omitempty"`
	S3        json.RawMessage `json:"s3,omitempty"`
	Gcs       json.RawMessage `json:"gcs,omitempty"`
	Abfss     json.RawMessage `json:"abfss,omitempty"`
}

// kind returns the destination kind and path of a script.
func (s InitScriptInfo) kind() (string, string) {
	switch {
	case s.Workspace != nil:
		return "workspace", s.Workspace.Destination
	case s.Dbfs != nil:
		return "dbfs", s.Dbfs.Destination
	case s.Volumes != nil:
		return "volumes", s.Volumes.Destination
	case s.File != nil:
		return "file", s.File.Destination
	case len(s.S3) > 0:
		return "s3", ""
	case len(s.Gcs) > 0:
		return "gcs", ""
	case len(s.Abfss) > 0:
		return "abfss", ""
	}
	return "", ""
}

// ClusterSpec is a cluster's configuration, as create and edit send it.
// Fields Tandem does not act on (cloud attributes, docker images, policies)
// are kept as sent and returned by get.
type ClusterSpec struct {
	ClusterName               string            `json:"cluster_name,omitempty"`
	SparkVersion              string            `json:"spark_version"`
	NodeTypeID                string            `json:"node_type_id,omitempty"`
	DriverNodeTypeID          string            `json:"driver_node_type_id,omitempty"`
	NumWorkers                int               `json:"num_workers"`
	Autoscale                 *AutoScale        `json:"autoscale,omitempty"`
	InstancePoolID            string            `json:"instance_pool_id,omitempty"`
	DriverInstancePoolID      string            `json:"driver_instance_pool_id,omitempty"`
	AutoterminationMinutes    int               `json:"autotermination_minutes,omitempty"`
	EnableElasticDisk         bool              `json:"enable_elastic_disk,omitempty"`
	EnableLocalDiskEncryption bool              `json:"enable_local_disk_encryption,omitempty"`
	SparkConf                 map[string]string `json:"spark_conf,omitempty"`
	SparkEnvVars              map[string]string `json:"spark_env_vars,omitempty"`
	CustomTags                map[string]string `json:"custom_tags,omitempty"`
	SSHPublicKeys             []string          `json:"ssh_public_keys,omitempty"`
	InitScripts               []InitScriptInfo  `json:"init_scripts,omitempty"`
	ClusterLogConf            json.RawMessage   `json:"cluster_log_conf,omitempty"`
	DataSecurityMode          string            `json:"data_security_mode,omitempty"`
	SingleUserName            string            `json:"single_user_name,omitempty"`
	RuntimeEngine             string            `json:"runtime_engine,omitempty"`
	PolicyID                  string            `json:"policy_id,omitempty"`
	IsSingleNode              bool              `json:"is_single_node,omitempty"`
	Kind                      string            `json:"kind,omitempty"`
	UseMLRuntime              bool              `json:"use_ml_runtime,omitempty"`
	DockerImage               json.RawMessage   `json:"docker_image,omitempty"`
	AwsAttributes             json.RawMessage   `json:"aws_attributes,omitempty"`
	AzureAttributes           json.RawMessage   `json:"azure_attributes,omitempty"`
	GcpAttributes             json.RawMessage   `json:"gcp_attributes,omitempty"`
	WorkloadType              json.RawMessage   `json:"workload_type,omitempty"`
	RemoteDiskThroughput      int               `json:"remote_disk_throughput,omitempty"`
	TotalInitialRemoteDisk    int               `json:"total_initial_remote_disk_size,omitempty"`
}

// autoscaling reports whether the spec asks for autoscaling.
func (s ClusterSpec) autoscaling() bool { return s.Autoscale != nil }

// initialWorkers is the worker count a cluster starts with.
func (s ClusterSpec) initialWorkers() int {
	if s.Autoscale != nil {
		return s.Autoscale.MinWorkers
	}
	return s.NumWorkers
}

// clampWorkers brings n within the spec's size: the autoscaling range, or
// the fixed size.
func (s ClusterSpec) clampWorkers(n int) int {
	if s.Autoscale == nil {
		return s.NumWorkers
	}
	return min(max(n, s.Autoscale.MinWorkers), s.Autoscale.MaxWorkers)
}

func (s ClusterSpec) driverNodeType() string {
	if s.DriverNodeTypeID != "" {
		return s.DriverNodeTypeID
	}
	return s.NodeTypeID
}

func (s ClusterSpec) driverPool() string {
	if s.DriverInstancePoolID != "" {
		return s.DriverInstancePoolID
	}
	return s.InstancePoolID
}

// TerminationReason says why a cluster terminated.
type TerminationReason struct {
	Code       string            `json:"code,omitempty"`
	Type       string            `json:"type,omitempty"`
	Parameters map[string]string `json:"parameters,omitempty"`
}

// Termination reason types.
const (
	ReasonSuccess      = "SUCCESS"
	ReasonClientError  = "CLIENT_ERROR"
	ReasonServiceFault = "SERVICE_FAULT"
	ReasonCloudFailure = "CLOUD_FAILURE"
)

// Cluster is the stored record of a cluster: its spec, where it is in its
// life cycle, and the asynchronous operation in progress.
type Cluster struct {
	ID      string      `json:"cluster_id"`
	Spec    ClusterSpec `json:"spec"`
	Creator string      `json:"creator_user_name"`
	Source  string      `json:"cluster_source"`
	// State and its message and reason.
	State        string             `json:"state"`
	StateMessage string             `json:"state_message,omitempty"`
	Reason       *TerminationReason `json:"termination_reason,omitempty"`
	// Times in epoch milliseconds.
	CreatedTime       int64 `json:"created_time"`
	StartTime         int64 `json:"start_time,omitempty"`
	StateSince        int64 `json:"state_since,omitempty"`
	TerminatedTime    int64 `json:"terminated_time,omitempty"`
	LastRestartedTime int64 `json:"last_restarted_time,omitempty"`
	LastStateLossTime int64 `json:"last_state_loss_time,omitempty"`
	// LastActivity is the last time the cluster ran work (auto-termination).
	LastActivity int64 `json:"last_activity,omitempty"`
	Pinned       bool  `json:"pinned,omitempty"`
	// Generation increases whenever the cluster's nodes must start over
	// (start, restart, an edit while running, a new driver).
	Generation int64 `json:"generation"`
	// TargetWorkers is the worker count wanted now: num_workers, or within
	// the autoscaling range the autoscaler's choice.
	TargetWorkers int `json:"target_workers"`
	// ReleaseFirst are workers to let go first when the cluster shrinks
	// (the autoscaler's drained workers).
	ReleaseFirst []string `json:"release_first,omitempty"`
	// Op is the asynchronous operation in progress (create, start,
	// restart, edit, resize, delete), with the request that started it,
	// for its ...Result audit record.
	Op        string `json:"op,omitempty"`
	OpRequest string `json:"op_request,omitempty"`
	OpUser    string `json:"op_user,omitempty"`
	// PermanentDelete removes the cluster once it has terminated.
	PermanentDelete bool `json:"permanent_delete,omitempty"`
	// Secret is the cluster's Spark RPC secret wrapped by the keyring
	// (never stored in clear), when intra-cluster encryption is on.
	Secret []byte `json:"secret,omitempty"`
	// EventSeq numbers the cluster's events.
	EventSeq int64 `json:"event_seq"`
	// SparkContextID changes with every start of the cluster's Spark.
	SparkContextID int64 `json:"spark_context_id,omitempty"`
	// LaunchFailures counts instances that failed to come up in a row.
	LaunchFailures int `json:"launch_failures,omitempty"`
	// Waiting says why the cluster waits for instances (a pool at its max
	// capacity), for the state message.
	Waiting string `json:"waiting,omitempty"`
	// DefaultTags are fixed at creation.
	DefaultTags map[string]string `json:"default_tags,omitempty"`
	// ScriptsStarted and ScriptsReported are the generations whose init
	// scripts were logged as started and finished.
	ScriptsStarted  int64 `json:"scripts_started,omitempty"`
	ScriptsReported int64 `json:"scripts_reported,omitempty"`
	// RunID is the job run a job cluster was made for (cost accounting).
	RunID int64 `json:"run_id,omitempty"`
}

// active reports whether the cluster has (or wants) instances.
func (c *Cluster) active() bool {
	return c.State != Terminated && c.State != Error
}

// ClusterSize is a cluster's size in events.
type ClusterSize struct {
	NumWorkers int        `json:"num_workers,omitempty"`
	Autoscale  *AutoScale `json:"autoscale,omitempty"`
}

func sizeOf(s ClusterSpec) *ClusterSize {
	if s.Autoscale != nil {
		a := *s.Autoscale
		return &ClusterSize{Autoscale: &a}
	}
	return &ClusterSize{NumWorkers: s.NumWorkers}
}

// Event types Tandem records (Databricks' EventType values).
const (
	EvCreating            = "CREATING"
	EvStarting            = "STARTING"
	EvRestarting          = "RESTARTING"
	EvTerminating         = "TERMINATING"
	EvEdited              = "EDITED"
	EvRunning             = "RUNNING"
	EvResizing            = "RESIZING"
	EvUpsizeCompleted     = "UPSIZE_COMPLETED"
	EvNodesLost           = "NODES_LOST"
	EvInitScriptsStarted  = "INIT_SCRIPTS_STARTED"
	EvInitScriptsFinished = "INIT_SCRIPTS_FINISHED"
	EvDriverHealthy       = "DRIVER_HEALTHY"
	EvDriverNotResponding = "DRIVER_NOT_RESPONDING"
	EvDriverUnavailable   = "DRIVER_UNAVAILABLE"
	EvPinned              = "PINNED"
	EvUnpinned            = "UNPINNED"
	EvAddNodesFailed      = "ADD_NODES_FAILED"
)

// EventTypes are every EventType value of the API (the filter accepts any
// of them, whether or not Tandem records it).
var EventTypes = []string{"ADD_NODES_FAILED", "AUTOMATIC_CLUSTER_UPDATE", "AUTOSCALING_BACKOFF", "AUTOSCALING_FAILED",
	"AUTOSCALING_STATS_REPORT", "CLUSTER_MIGRATED", "CREATING", "DBFS_DOWN", "DID_NOT_EXPAND_DISK", "DRIVER_HEALTHY",
	"DRIVER_NOT_RESPONDING", "DRIVER_UNAVAILABLE", "EDITED", "EXPANDED_DISK", "FAILED_TO_EXPAND_DISK",
	"INIT_SCRIPTS_FINISHED", "INIT_SCRIPTS_STARTED", "METASTORE_DOWN", "NODES_LOST", "NODE_BLACKLISTED",
	"NODE_EXCLUDED_DECOMMISSIONED", "PINNED", "RESIZING", "RESTARTING", "RUNNING", "SPARK_EXCEPTION", "STARTING",
	"TERMINATING", "UNPINNED", "UPSIZE_COMPLETED", "DECOMMISSION_STARTED", "DECOMMISSION_ENDED"}

// Causes of a change in target size.
const (
	CauseUserRequest  = "USER_REQUEST"
	CauseAutoscale    = "AUTOSCALE"
	CauseAutorecovery = "AUTORECOVERY"
)

// EventDetails are an event's details (Databricks' EventDetails).
type EventDetails struct {
	Attributes          *ClusterSpec       `json:"attributes,omitempty"`
	PreviousAttributes  *ClusterSpec       `json:"previous_attributes,omitempty"`
	ClusterSize         *ClusterSize       `json:"cluster_size,omitempty"`
	PreviousClusterSize *ClusterSize       `json:"previous_cluster_size,omitempty"`
	Cause               string             `json:"cause,omitempty"`
	CurrentNumWorkers   int                `json:"current_num_workers,omitempty"`
	TargetNumWorkers    int                `json:"target_num_workers,omitempty"`
	CurrentNumVcpus     int                `json:"current_num_vcpus,omitempty"`
	TargetNumVcpus      int                `json:"target_num_vcpus,omitempty"`
	Reason              *TerminationReason `json:"reason,omitempty"`
	User                string             `json:"user,omitempty"`
	InstanceID          string             `json:"instance_id,omitempty"`
	DriverStateMessage  string             `json:"driver_state_message,omitempty"`
	JobRunName          string             `json:"job_run_name,omitempty"`
	InitScripts         *InitScriptDetails `json:"init_scripts,omitempty"`
	// Local storage autoscaling (EXPANDED_DISK, FAILED_TO_EXPAND_DISK,
	// DID_NOT_EXPAND_DISK): sizes in bytes.
	DiskSize           int64  `json:"disk_size,omitempty"`
	PreviousDiskSize   int64  `json:"previous_disk_size,omitempty"`
	FreeSpace          int64  `json:"free_space,omitempty"`
	DidNotExpandReason string `json:"did_not_expand_reason,omitempty"`
	// AutoscalingReason says why the autoscaler decided (a Tandem
	// extension on AUTOSCALING_STATS_REPORT events).
	AutoscalingReason string `json:"autoscaling_reason,omitempty"`
}

// InitScriptDetails are the init script results of one node, reported for
// all (Databricks reports one node).
type InitScriptDetails struct {
	Cluster         []InitScriptExecution `json:"cluster,omitempty"`
	Global          []InitScriptExecution `json:"global,omitempty"`
	ReportedForNode string                `json:"reported_for_node,omitempty"`
}

// InitScriptExecution is one script's outcome.
type InitScriptExecution struct {
	Workspace                *StorageInfo `json:"workspace,omitempty"`
	Dbfs                     *StorageInfo `json:"dbfs,omitempty"`
	Volumes                  *StorageInfo `json:"volumes,omitempty"`
	File                     *StorageInfo `json:"file,omitempty"`
	Status                   string       `json:"status,omitempty"`
	ExecutionDurationSeconds int          `json:"execution_duration_seconds,omitempty"`
	ErrorMessage             string       `json:"error_message,omitempty"`
}

// Event is one entry of a cluster's event log.
type Event struct {
	ClusterID string       `json:"cluster_id"`
	Timestamp int64        `json:"timestamp"`
	Type      string       `json:"type"`
	Details   EventDetails `json:"details"`
}

func eventKey(clusterID string, seq int64) string { return fmt.Sprintf("%s/%020d", clusterID, seq) }

// Instance states in the store.
const (
	// InstProvisioning: recorded, the provider has not yet confirmed it.
	InstProvisioning = "provisioning"
	// InstLaunched: the provider runs it.
	InstLaunched = "launched"
	// InstDeleting: to be deleted by the provider.
	InstDeleting = "deleting"
)

// Instance is the stored record of an instance: what it is, and what it
// should be (Generation, the assignment its agent must carry out).
type Instance struct {
	ID       string `json:"instance_id"`
	NodeType string `json:"node_type_id"`
	// PoolID is the pool that owns the instance, if any.
	PoolID string `json:"instance_pool_id,omitempty"`
	State  string `json:"state"`
	// ClusterID and Role: the assignment; empty for an idle pooled
	// instance.
	ClusterID string `json:"cluster_id,omitempty"`
	Role      string `json:"role,omitempty"`
	// Generation of the assignment; ClusterGen the cluster generation it
	// is for.
	Generation int64 `json:"generation"`
	ClusterGen int64 `json:"cluster_generation,omitempty"`
	// LastCluster is the cluster the instance last served (its logs).
	LastCluster string `json:"last_cluster,omitempty"`
	CertSerial  string `json:"cert_serial"`
	CreatedTime int64  `json:"created_time"`
	// AssignedTime is when it joined its cluster, IdleSince when it went
	// back to its pool.
	AssignedTime int64 `json:"assigned_time,omitempty"`
	IdleSince    int64 `json:"idle_since,omitempty"`
	// LaunchedTime is when the provider confirmed it runs.
	LaunchedTime int64 `json:"launched_time,omitempty"`
	// LaunchAttempts counts failed provider creations; LaunchFailed marks
	// an instance given up on, with the provider's error.
	LaunchAttempts int    `json:"launch_attempts,omitempty"`
	LaunchFailed   bool   `json:"launch_failed,omitempty"`
	LaunchError    string `json:"launch_error,omitempty"`
	// UsageKey is the open usage record of the instance.
	UsageKey string `json:"usage_key,omitempty"`
}

// Usage is one stretch of an instance's life: serving a cluster, or idle
// in a pool. Cost accounting reads these (instance uptime by cluster and
// compute type).
type Usage struct {
	InstanceID    string `json:"instance_id"`
	NodeType      string `json:"node_type_id"`
	ClusterID     string `json:"cluster_id,omitempty"`
	ClusterSource string `json:"cluster_source,omitempty"`
	// ComputeType is ALL_PURPOSE, JOBS or JOBS_LIGHT (ComputeType): the
	// rate the stretch is charged at.
	ComputeType string `json:"compute_type,omitempty"`
	Role        string `json:"role,omitempty"`
	PoolID      string `json:"instance_pool_id,omitempty"`
	RunID       int64  `json:"run_id,omitempty"`
	StartMillis int64  `json:"start_time"`
	EndMillis   int64  `json:"end_time,omitempty"` // 0 while open
}

func usageKey(instanceID string, start int64) string {
	return fmt.Sprintf("%s/%020d", instanceID, start)
}

// NodeType is an instance type (list-node-types).
type NodeType struct {
	NodeTypeID       string            `json:"node_type_id"`
	InstanceTypeID   string            `json:"instance_type_id"`
	MemoryMB         int               `json:"memory_mb"`
	NumCores         float64           `json:"num_cores"`
	Description      string            `json:"description"`
	Category         string            `json:"category"`
	NumGPUs          int               `json:"num_gpus,omitempty"`
	DisplayOrder     int               `json:"display_order,omitempty"`
	SupportTags      bool              `json:"support_cluster_tags,omitempty"`
	EncryptedTransit bool              `json:"is_encrypted_in_transit,omitempty"`
	NodeInstanceType *NodeInstanceType `json:"node_instance_type,omitempty"`
	PhotonWorker     bool              `json:"photon_worker_capable"`
	PhotonDriver     bool              `json:"photon_driver_capable"`
	IsIOCacheEnabled bool              `json:"is_io_cache_enabled"`
}

// NodeInstanceType describes a node type's local disks.
type NodeInstanceType struct {
	InstanceTypeID  string `json:"instance_type_id"`
	LocalDisks      int    `json:"local_disks,omitempty"`
	LocalDiskSizeGB int    `json:"local_disk_size_gb,omitempty"`
}

// DefaultNodeTypes are the local provider's instance sizes. Cores and
// memory are what the instance declares to Spark, not a reservation.
var DefaultNodeTypes = []NodeType{
	nodeType("tandem.small", 1, 2048, 1),
	nodeType("tandem.medium", 2, 4096, 2),
	nodeType("tandem.large", 4, 8192, 3),
}

func nodeType(id string, cores, memMB, order int) NodeType {
	return NodeType{NodeTypeID: id, InstanceTypeID: id, MemoryMB: memMB, NumCores: float64(cores),
		Description: fmt.Sprintf("%d core%s, %d GB (a local instance)", cores, plural(cores), memMB/1024),
		Category:    "General Purpose", DisplayOrder: order, SupportTags: true,
		NodeInstanceType: &NodeInstanceType{InstanceTypeID: id, LocalDisks: 1, LocalDiskSizeGB: 10}}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// SparkVersion is a runtime (spark-versions).
type SparkVersion struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

// SparkVersions returns the runtimes of the installed Apache Spark version
// (such as "4.1.4"): keys in Databricks' form ("4.1.x-scala2.13") whose
// names say which Apache Spark they really are.
func SparkVersions(apacheVersion string) []SparkVersion {
	major, minor := "4", "1"
	var a, b int
	if n, _ := fmt.Sscanf(apacheVersion, "%d.%d", &a, &b); n == 2 {
		major, minor = fmt.Sprint(a), fmt.Sprint(b)
	}
	base := major + "." + minor
	return []SparkVersion{
		{Key: base + ".x-scala2.13", Name: fmt.Sprintf("Tandem %s (includes Apache Spark %s, Scala 2.13)", base, apacheVersion)},
		// Jobs Light: the same Apache Spark for job clusters, charged at
		// the Jobs Light rate (ComputeType).
		{Key: lightPrefix + base + ".x-scala2.13", Name: fmt.Sprintf("Light %s (includes Apache Spark %s, Scala 2.13)", base, apacheVersion)},
	}
}

// Pool states.
const (
	PoolActive  = "ACTIVE"
	PoolDeleted = "DELETED"
)

// Pool is the stored record of an instance pool.
type Pool struct {
	ID                         string            `json:"instance_pool_id"`
	Name                       string            `json:"instance_pool_name"`
	NodeTypeID                 string            `json:"node_type_id"`
	MinIdle                    int               `json:"min_idle_instances,omitempty"`
	MaxCapacity                int               `json:"max_capacity,omitempty"`
	IdleAutoterminationMinutes int               `json:"idle_instance_autotermination_minutes"`
	PreloadedSparkVersions     []string          `json:"preloaded_spark_versions,omitempty"`
	PreloadedDockerImages      json.RawMessage   `json:"preloaded_docker_images,omitempty"`
	CustomTags                 map[string]string `json:"custom_tags,omitempty"`
	EnableElasticDisk          bool              `json:"enable_elastic_disk,omitempty"`
	DiskSpec                   json.RawMessage   `json:"disk_spec,omitempty"`
	AwsAttributes              json.RawMessage   `json:"aws_attributes,omitempty"`
	AzureAttributes            json.RawMessage   `json:"azure_attributes,omitempty"`
	GcpAttributes              json.RawMessage   `json:"gcp_attributes,omitempty"`
	RemoteDiskThroughput       int               `json:"remote_disk_throughput,omitempty"`
	TotalInitialRemoteDisk     int               `json:"total_initial_remote_disk_size,omitempty"`
	State                      string            `json:"state"`
	DefaultTags                map[string]string `json:"default_tags,omitempty"`
	Creator                    string            `json:"creator,omitempty"`
	// PendingErrors are recent failures to make instances.
	PendingErrors []PendingError `json:"pending_errors,omitempty"`
}

// PendingError is a failure to make a pool instance.
type PendingError struct {
	InstanceID string `json:"instance_id"`
	Message    string `json:"message"`
}

// Task states in the store.
const (
	TaskPending  = "PENDING"
	TaskRunning  = "RUNNING"
	TaskFinished = "FINISHED"
)

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
