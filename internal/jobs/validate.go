package jobs

import (
	"regexp"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/quartz"
)

// Limits of a job's settings.
const (
	maxTasks             = 1000
	maxConcurrentRunsCap = 1000
	maxNameLen           = 4096
)

var taskKeyRE = regexp.MustCompile(`^[\w\-]{1,100}$`)

var runIfValues = map[string]bool{"": true, "ALL_SUCCESS": true, "ALL_DONE": true, "NONE_FAILED": true,
	"AT_LEAST_ONE_SUCCESS": true, "ALL_FAILED": true, "AT_LEAST_ONE_FAILED": true}

// validate checks a job's settings without I/O: names, task keys, one task
// type and one kind of compute per task, dependencies without cycles, run_if
// values, retries, the schedule's Quartz expression and time zone. The
// caller checks what needs the store (notebooks, clusters, destinations).
func validate(s Spec, forRun bool) error {
	if len(s.Name) > maxNameLen {
		return api.InvalidParam("name is longer than %d characters.", maxNameLen)
	}
	if forRun && len(s.Tasks) == 0 {
		return api.InvalidParam("The job has no tasks to run.")
	}
	if len(s.Tasks) > maxTasks {
		return api.InvalidParam("A job can have at most %d tasks; this one has %d.", maxTasks, len(s.Tasks))
	}
	if s.MaxConcurrentRuns != nil && (*s.MaxConcurrentRuns < 0 || *s.MaxConcurrentRuns > maxConcurrentRunsCap) {
		return api.InvalidParam("max_concurrent_runs must be between 0 and %d.", maxConcurrentRunsCap)
	}
	if s.TimeoutSeconds < 0 {
		return api.InvalidParam("timeout_seconds must not be negative.")
	}
	jobClusters := map[string]bool{}
	for _, jc := range s.JobClusters {
		if !taskKeyRE.MatchString(jc.JobClusterKey) {
			return api.InvalidParam("job_cluster_key %q must be 1-100 letters, digits, '_' or '-'.", jc.JobClusterKey)
		}
		if jobClusters[jc.JobClusterKey] {
			return api.InvalidParam("job_cluster_key %q is used twice.", jc.JobClusterKey)
		}
		if len(jc.NewCluster) == 0 || string(jc.NewCluster) == "null" {
			return api.InvalidParam("Job cluster %q has no new_cluster.", jc.JobClusterKey)
		}
		jobClusters[jc.JobClusterKey] = true
	}
	keys := map[string]bool{}
	for _, t := range s.Tasks {
		if t.TaskKey == "" {
			return api.MissingField("tasks.task_key")
		}
		if !taskKeyRE.MatchString(t.TaskKey) {
			return api.InvalidParam("task_key %q must be 1-100 letters, digits, '_' or '-'.", t.TaskKey)
		}
		if keys[t.TaskKey] {
			return api.InvalidParam("task_key %q is used by two tasks; task keys must be unique.", t.TaskKey)
		}
		keys[t.TaskKey] = true
	}
	for _, t := range s.Tasks {
		if err := validateTask(t, keys, jobClusters); err != nil {
			return err
		}
	}
	if cycle := findCycle(s.Tasks); cycle != nil {
		return api.InvalidParam("The tasks' depends_on form a cycle: %s.", strings.Join(cycle, " -> "))
	}
	names := map[string]bool{}
	for _, p := range s.Parameters {
		if p.Name == "" {
			return api.MissingField("parameters.name")
		}
		if names[p.Name] {
			return api.InvalidParam("Job parameter %q is defined twice.", p.Name)
		}
		names[p.Name] = true
	}
	if s.Schedule != nil {
		if _, _, err := parseSchedule(*s.Schedule); err != nil {
			return err
		}
	}
	return nil
}

func validateTask(t Task, keys, jobClusters map[string]bool) error {
	types := 0
	for _, present := range []bool{t.NotebookTask != nil, t.SparkPythonTask != nil, t.SparkSubmitTask != nil,
		t.PythonWheelTask != nil, t.SQLTask != nil} {
		if present {
			types++
		}
	}
	for name, raw := range map[string][]byte{"spark_jar_task": t.SparkJarTask, "run_job_task": t.RunJobTask,
		"condition_task": t.ConditionTask, "pipeline_task": t.PipelineTask, "dbt_task": t.DbtTask, "for_each_task": t.ForEachTask} {
		if len(raw) > 0 && string(raw) != "null" {
			return api.InvalidParam("Task %q: %s is not supported by Tandem; use notebook_task, spark_python_task, spark_submit_task, python_wheel_task or sql_task.", t.TaskKey, name)
		}
	}
	if types != 1 {
		return api.InvalidParam("Task %q must have exactly one of notebook_task, spark_python_task, spark_submit_task, python_wheel_task and sql_task.", t.TaskKey)
	}
	switch {
	case t.NotebookTask != nil && strings.TrimSpace(t.NotebookTask.NotebookPath) == "":
		return api.MissingField("notebook_task.notebook_path")
	case t.SparkPythonTask != nil && strings.TrimSpace(t.SparkPythonTask.PythonFile) == "":
		return api.MissingField("spark_python_task.python_file")
	case t.PythonWheelTask != nil && (t.PythonWheelTask.PackageName == "" || t.PythonWheelTask.EntryPoint == ""):
		return api.InvalidParam("Task %q: python_wheel_task needs package_name and entry_point.", t.TaskKey)
	case t.SQLTask != nil && t.SQLTask.File == nil && (t.SQLTask.Query == nil || (t.SQLTask.Query.QueryID == "" && t.SQLTask.Query.QueryText == "")):
		return api.InvalidParam("Task %q: sql_task needs a file or a query.", t.TaskKey)
	}
	computes := 0
	if t.ExistingClusterID != "" {
		computes++
	}
	if len(t.NewCluster) > 0 && string(t.NewCluster) != "null" {
		computes++
	}
	if t.JobClusterKey != "" {
		computes++
		if !jobClusters[t.JobClusterKey] {
			return api.InvalidParam("Task %q uses job_cluster_key %q, which is not in job_clusters.", t.TaskKey, t.JobClusterKey)
		}
	}
	if t.SQLTask != nil && computes == 0 && t.SQLTask.WarehouseID != "" {
		computes = 1 // a warehouse id names an existing cluster
	}
	if computes != 1 {
		return api.InvalidParam("Task %q must run on exactly one of existing_cluster_id, new_cluster and job_cluster_key.", t.TaskKey)
	}
	if !runIfValues[t.RunIf] {
		return api.InvalidParam("Task %q: run_if %q is not one of ALL_SUCCESS, ALL_DONE, NONE_FAILED, AT_LEAST_ONE_SUCCESS, ALL_FAILED, AT_LEAST_ONE_FAILED.", t.TaskKey, t.RunIf)
	}
	if t.TimeoutSeconds < 0 || t.MinRetryIntervalMillis < 0 || t.MaxRetries < -1 {
		return api.InvalidParam("Task %q: timeout_seconds and min_retry_interval_millis must not be negative, max_retries must be -1 (no limit) or more.", t.TaskKey)
	}
	seen := map[string]bool{}
	for _, d := range t.DependsOn {
		switch {
		case d.TaskKey == t.TaskKey:
			return api.InvalidParam("Task %q depends on itself.", t.TaskKey)
		case !keys[d.TaskKey]:
			return api.InvalidParam("Task %q depends on %q, which is not a task of this job.", t.TaskKey, d.TaskKey)
		case seen[d.TaskKey]:
			return api.InvalidParam("Task %q lists %q twice in depends_on.", t.TaskKey, d.TaskKey)
		}
		seen[d.TaskKey] = true
	}
	return nil
}

// findCycle returns the task keys of a dependency cycle, or nil.
func findCycle(tasks []Task) []string {
	deps := map[string][]string{}
	for _, t := range tasks {
		for _, d := range t.DependsOn {
			deps[t.TaskKey] = append(deps[t.TaskKey], d.TaskKey)
		}
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var found []string
	var visit func(k string) bool
	visit = func(k string) bool {
		color[k] = grey
		stack = append(stack, k)
		for _, d := range deps[k] {
			switch color[d] {
			case grey:
				for i, s := range stack {
					if s == d {
						found = append(append([]string(nil), stack[i:]...), d)
					}
				}
				return true
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[k] = black
		return false
	}
	for _, t := range tasks {
		if color[t.TaskKey] == white && visit(t.TaskKey) {
			return found
		}
	}
	return nil
}

// parseSchedule parses a job's schedule: its Quartz expression and time zone.
func parseSchedule(s CronSchedule) (*quartz.Schedule, *time.Location, error) {
	if strings.TrimSpace(s.QuartzCronExpression) == "" {
		return nil, nil, api.MissingField("schedule.quartz_cron_expression")
	}
	if s.TimezoneID == "" {
		return nil, nil, api.MissingField("schedule.timezone_id")
	}
	q, err := quartz.Parse(s.QuartzCronExpression)
	if err != nil {
		return nil, nil, api.InvalidParam("Invalid Quartz cron expression: %v.", err)
	}
	loc, err := time.LoadLocation(s.TimezoneID)
	if err != nil || strings.EqualFold(s.TimezoneID, "local") {
		return nil, nil, api.InvalidParam("Invalid timezone_id %q: use an IANA time zone such as UTC or Europe/Madrid.", s.TimezoneID)
	}
	switch s.PauseStatus {
	case "", "PAUSED", "UNPAUSED":
	default:
		return nil, nil, api.InvalidParam("schedule.pause_status must be PAUSED or UNPAUSED, not %q.", s.PauseStatus)
	}
	return q, loc, nil
}
