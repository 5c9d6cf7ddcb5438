// Package jobs is Tandem's Jobs API 2.2: jobs with multi-task DAGs, runs
// (triggered, scheduled and one-time submits), the run life cycle with
// retries, timeouts, run_if and concurrency queueing, and the Quartz
// scheduler that fires each tick exactly once across restarts. What a run
// decides next is a pure function (plan.go); the executor applies its
// decisions through small interfaces to compute (clusters and tasks).
package jobs

import (
	"encoding/json"
	"fmt"
	"math"
)

// Store kinds owned by this package.
const (
	kindJob      = "jobs.job"      // key: job id (20 digits)
	kindJobName  = "jobs.job.name" // key: lower-case name "/" job id, for name filters
	kindRun      = "jobs.run"      // key: reversed run id (newest first)
	kindRunByJob = "jobs.run.job"  // key: job id "/" reversed run id -> run id
	kindTaskRun  = "jobs.task"     // key: task run id -> parent run id
	kindSchedule = "jobs.schedule" // key: job id -> schedule state (last tick)
	kindIdem     = "jobs.idempotency"
)

// KindPrefix is the prefix of every store kind of this package.
const KindPrefix = "jobs."

func jobKey(id int64) string { return fmt.Sprintf("%020d", id) }

// runKey orders runs newest first.
func runKey(id int64) string { return fmt.Sprintf("%019d", math.MaxInt64-id) }

// Job is a stored job. Settings keep exactly what the client set (so a get
// returns it whole, fields Tandem does not interpret included); Spec is the
// typed view Tandem acts on.
type Job struct {
	JobID           int64           `json:"job_id"`
	CreatorUserName string          `json:"creator_user_name,omitempty"`
	RunAsUserName   string          `json:"run_as_user_name,omitempty"`
	CreatedTime     int64           `json:"created_time"`
	Settings        json.RawMessage `json:"settings"`
}

// Spec is the part of JobSettings that Tandem interprets.
type Spec struct {
	Name                 string                `json:"name,omitempty"`
	Tasks                []Task                `json:"tasks,omitempty"`
	JobClusters          []JobCluster          `json:"job_clusters,omitempty"`
	Schedule             *CronSchedule         `json:"schedule,omitempty"`
	MaxConcurrentRuns    *int                  `json:"max_concurrent_runs,omitempty"`
	TimeoutSeconds       int64                 `json:"timeout_seconds,omitempty"`
	WebhookNotifications *WebhookNotifications `json:"webhook_notifications,omitempty"`
	Parameters           []JobParameterDef     `json:"parameters,omitempty"`
	Queue                *QueueSettings        `json:"queue,omitempty"`
	Format               string                `json:"format,omitempty"`
	Tags                 map[string]string     `json:"tags,omitempty"`
	RunAs                *RunAs                `json:"run_as,omitempty"`
}

// ConcurrencyLimit is max_concurrent_runs, 1 when unset as in Databricks.
func (s Spec) ConcurrencyLimit() int {
	if s.MaxConcurrentRuns == nil {
		return 1
	}
	return *s.MaxConcurrentRuns
}

// QueueEnabled reports whether runs over the concurrency limit wait in a
// queue instead of being skipped. Jobs created through API 2.2 queue unless
// they say otherwise.
func (s Spec) QueueEnabled() bool { return s.Queue == nil || s.Queue.Enabled }

// CronSchedule is a job's Quartz schedule.
type CronSchedule struct {
	QuartzCronExpression string `json:"quartz_cron_expression"`
	TimezoneID           string `json:"timezone_id"`
	PauseStatus          string `json:"pause_status,omitempty"`
}

// QueueSettings turns run queueing on or off.
type QueueSettings struct {
	Enabled bool `json:"enabled"`
}

// RunAs names the principal runs execute as.
type RunAs struct {
	UserName             string `json:"user_name,omitempty"`
	ServicePrincipalName string `json:"service_principal_name,omitempty"`
}

// JobParameterDef is a job-level parameter with its default.
type JobParameterDef struct {
	Name    string `json:"name"`
	Default string `json:"default"`
}

// WebhookNotifications name notification destinations per event.
type WebhookNotifications struct {
	OnStart   []Webhook `json:"on_start,omitempty"`
	OnSuccess []Webhook `json:"on_success,omitempty"`
	OnFailure []Webhook `json:"on_failure,omitempty"`
}

// Webhook references a notification destination by id.
type Webhook struct {
	ID string `json:"id"`
}

// JobCluster is a cluster spec shared by tasks of a run.
type JobCluster struct {
	JobClusterKey string          `json:"job_cluster_key"`
	NewCluster    json.RawMessage `json:"new_cluster"`
}

// Task is one task of a job.
type Task struct {
	TaskKey                string                `json:"task_key"`
	Description            string                `json:"description,omitempty"`
	DependsOn              []Dependency          `json:"depends_on,omitempty"`
	RunIf                  string                `json:"run_if,omitempty"`
	ExistingClusterID      string                `json:"existing_cluster_id,omitempty"`
	NewCluster             json.RawMessage       `json:"new_cluster,omitempty"`
	JobClusterKey          string                `json:"job_cluster_key,omitempty"`
	NotebookTask           *NotebookTask         `json:"notebook_task,omitempty"`
	SparkPythonTask        *SparkPythonTask      `json:"spark_python_task,omitempty"`
	SparkSubmitTask        *SparkSubmitTask      `json:"spark_submit_task,omitempty"`
	PythonWheelTask        *PythonWheelTask      `json:"python_wheel_task,omitempty"`
	SQLTask                *SQLTask              `json:"sql_task,omitempty"`
	Libraries              []json.RawMessage     `json:"libraries,omitempty"`
	TimeoutSeconds         int64                 `json:"timeout_seconds,omitempty"`
	MaxRetries             int                   `json:"max_retries,omitempty"`
	MinRetryIntervalMillis int64                 `json:"min_retry_interval_millis,omitempty"`
	RetryOnTimeout         bool                  `json:"retry_on_timeout,omitempty"`
	WebhookNotifications   *WebhookNotifications `json:"webhook_notifications,omitempty"`
	// Unsupported task types are kept to refuse them clearly.
	SparkJarTask  json.RawMessage `json:"spark_jar_task,omitempty"`
	RunJobTask    json.RawMessage `json:"run_job_task,omitempty"`
	ConditionTask json.RawMessage `json:"condition_task,omitempty"`
	PipelineTask  json.RawMessage `json:"pipeline_task,omitempty"`
	DbtTask       json.RawMessage `json:"dbt_task,omitempty"`
	ForEachTask   json.RawMessage `json:"for_each_task,omitempty"`
}

// Dependency is one upstream task.
type Dependency struct {
	TaskKey string `json:"task_key"`
	Outcome string `json:"outcome,omitempty"`
}

// NotebookTask runs a workspace notebook.
type NotebookTask struct {
	NotebookPath   string            `json:"notebook_path"`
	BaseParameters map[string]string `json:"base_parameters,omitempty"`
	Source         string            `json:"source,omitempty"`
	WarehouseID    string            `json:"warehouse_id,omitempty"`
}

// SparkPythonTask runs a Python file from the workspace or DBFS.
type SparkPythonTask struct {
	PythonFile string   `json:"python_file"`
	Parameters []string `json:"parameters,omitempty"`
	Source     string   `json:"source,omitempty"`
}

// SparkSubmitTask runs spark-submit with parameters.
type SparkSubmitTask struct {
	Parameters []string `json:"parameters,omitempty"`
}

// PythonWheelTask runs an entry point of a wheel library.
type PythonWheelTask struct {
	PackageName     string            `json:"package_name"`
	EntryPoint      string            `json:"entry_point"`
	Parameters      []string          `json:"parameters,omitempty"`
	NamedParameters map[string]string `json:"named_parameters,omitempty"`
}

// SQLTask runs SQL through Spark SQL: a workspace SQL file, or a query.
type SQLTask struct {
	WarehouseID string            `json:"warehouse_id,omitempty"`
	Query       *SQLQuery         `json:"query,omitempty"`
	File        *SQLFile          `json:"file,omitempty"`
	Parameters  map[string]string `json:"parameters,omitempty"`
}

// SQLQuery names a query. Tandem has no saved-query service: query_id is the
// workspace path of a SQL file, and query_text (a Tandem extension) gives
// the statements inline.
type SQLQuery struct {
	QueryID   string `json:"query_id,omitempty"`
	QueryText string `json:"query_text,omitempty"`
}

// SQLFile is a SQL file in the workspace.
type SQLFile struct {
	Path   string `json:"path"`
	Source string `json:"source,omitempty"`
}

// TaskType names which kind of task t is, or "" if it has none.
func (t Task) TaskType() string {
	switch {
	case t.NotebookTask != nil:
		return "notebook_task"
	case t.SparkPythonTask != nil:
		return "spark_python_task"
	case t.SparkSubmitTask != nil:
		return "spark_submit_task"
	case t.PythonWheelTask != nil:
		return "python_wheel_task"
	case t.SQLTask != nil:
		return "sql_task"
	}
	return ""
}

// Life-cycle and result states of runs and task runs.
const (
	Queued          = "QUEUED"
	Pending         = "PENDING"
	Running         = "RUNNING"
	Terminating     = "TERMINATING"
	Terminated      = "TERMINATED"
	Skipped         = "SKIPPED"
	InternalError   = "INTERNAL_ERROR"
	Blocked         = "BLOCKED"
	WaitingForRetry = "WAITING_FOR_RETRY"

	Success              = "SUCCESS"
	Failed               = "FAILED"
	TimedOut             = "TIMEDOUT"
	Canceled             = "CANCELED"
	MaxConcurrentReached = "MAXIMUM_CONCURRENT_RUNS_REACHED"
	Excluded             = "EXCLUDED"
	SuccessWithFailures  = "SUCCESS_WITH_FAILURES"
	UpstreamFailed       = "UPSTREAM_FAILED"
	UpstreamCanceled     = "UPSTREAM_CANCELED"
)

// Terminal reports whether a life-cycle state is final.
func Terminal(lifeCycle string) bool {
	return lifeCycle == Terminated || lifeCycle == Skipped || lifeCycle == InternalError
}

// RunState is the state object every run and task run carries (the SDK's
// waiters need it).
type RunState struct {
	LifeCycleState          string `json:"life_cycle_state"`
	ResultState             string `json:"result_state,omitempty"`
	StateMessage            string `json:"state_message"`
	UserCancelledOrTimedout bool   `json:"user_cancelled_or_timedout"`
	QueueReason             string `json:"queue_reason,omitempty"`
}

// ClusterInstance says where a task ran.
type ClusterInstance struct {
	ClusterID      string `json:"cluster_id,omitempty"`
	SparkContextID string `json:"spark_context_id,omitempty"`
}

// RunTask is a task of a run: the task's spec plus its run state.
type RunTask struct {
	Task
	RunID             int64            `json:"run_id"`
	State             RunState         `json:"state"`
	StartTime         int64            `json:"start_time,omitempty"`
	EndTime           int64            `json:"end_time,omitempty"`
	SetupDuration     int64            `json:"setup_duration,omitempty"`
	ExecutionDuration int64            `json:"execution_duration,omitempty"`
	CleanupDuration   int64            `json:"cleanup_duration,omitempty"`
	AttemptNumber     int              `json:"attempt_number"`
	ClusterInstance   *ClusterInstance `json:"cluster_instance,omitempty"`
	RunPageURL        string           `json:"run_page_url,omitempty"`
}

// TaskExec is the executor's private state of a task run, stored beside the
// run but never shown by the API.
type TaskExec struct {
	// Handle names the attempt in progress to the task runner. It is chosen
	// and stored before the runner is asked to start it, so a crash between
	// the two never starts an attempt twice: starting is idempotent by handle.
	Handle      string     `json:"handle,omitempty"`
	ClusterID   string     `json:"cluster_id,omitempty"`
	NextAttempt int64      `json:"next_attempt,omitempty"` // ms, while WAITING_FOR_RETRY
	Deadline    int64      `json:"deadline,omitempty"`     // ms, task timeout of the attempt
	TimedOut    bool       `json:"timed_out,omitempty"`
	CancelSent  bool       `json:"cancel_sent,omitempty"`
	Output      TaskOutput `json:"output"`
	Attempts    []Attempt  `json:"attempts,omitempty"`
}

// Attempt records a finished attempt of a task run.
type Attempt struct {
	Number    int    `json:"attempt_number"`
	Result    string `json:"result_state"`
	Message   string `json:"state_message"`
	StartTime int64  `json:"start_time"`
	EndTime   int64  `json:"end_time"`
}

// TaskOutput is what get-output returns for a task run.
type TaskOutput struct {
	NotebookResult string `json:"notebook_result,omitempty"`
	Truncated      bool   `json:"truncated,omitempty"`
	Logs           string `json:"logs,omitempty"`
	LogsTruncated  bool   `json:"logs_truncated,omitempty"`
	Error          string `json:"error,omitempty"`
	ErrorTrace     string `json:"error_trace,omitempty"`
	// TaskValues are what the task set with dbutils.jobs.taskValues (a
	// JSON object), for the tasks after it; get-output does not show them.
	TaskValues json.RawMessage `json:"task_values,omitempty"`
}

// JobParameter is a job parameter of a run with its resolved value.
type JobParameter struct {
	Name    string `json:"name"`
	Default string `json:"default,omitempty"`
	Value   string `json:"value,omitempty"`
}

// RepairHistoryItem records one repair of a run.
type RepairHistoryItem struct {
	ID         int64    `json:"id"`
	Type       string   `json:"type"` // ORIGINAL or REPAIR
	StartTime  int64    `json:"start_time"`
	EndTime    int64    `json:"end_time,omitempty"`
	State      RunState `json:"state"`
	TaskRunIDs []int64  `json:"task_run_ids,omitempty"`
}

// Run is a run of a job (or a one-time submit).
type Run struct {
	RunID                int64               `json:"run_id"`
	JobID                int64               `json:"job_id,omitempty"`
	NumberInJob          int64               `json:"number_in_job,omitempty"`
	OriginalAttemptRunID int64               `json:"original_attempt_run_id,omitempty"`
	RunName              string              `json:"run_name,omitempty"`
	CreatorUserName      string              `json:"creator_user_name,omitempty"`
	RunType              string              `json:"run_type"`
	Trigger              string              `json:"trigger,omitempty"`
	State                RunState            `json:"state"`
	StartTime            int64               `json:"start_time,omitempty"`
	EndTime              int64               `json:"end_time,omitempty"`
	SetupDuration        int64               `json:"setup_duration,omitempty"`
	ExecutionDuration    int64               `json:"execution_duration,omitempty"`
	CleanupDuration      int64               `json:"cleanup_duration,omitempty"`
	RunDuration          int64               `json:"run_duration,omitempty"`
	QueueDuration        int64               `json:"queue_duration,omitempty"`
	Tasks                []RunTask           `json:"tasks,omitempty"`
	JobClusters          []JobCluster        `json:"job_clusters,omitempty"`
	JobParameters        []JobParameter      `json:"job_parameters,omitempty"`
	OverridingParameters json.RawMessage     `json:"overriding_parameters,omitempty"`
	Schedule             *CronSchedule       `json:"schedule,omitempty"`
	RepairHistory        []RepairHistoryItem `json:"repair_history,omitempty"`
	RunPageURL           string              `json:"run_page_url,omitempty"`
	Description          string              `json:"description,omitempty"`
}
