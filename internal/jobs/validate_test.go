package jobs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidateRefusesBadSettings(t *testing.T) {
	ok := func() Spec {
		return Spec{Tasks: []Task{pyTask("a"), pyTask("b", "a")}}
	}
	cases := []struct {
		name   string
		mutate func(*Spec)
		msg    string // empty: valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"cycle", func(s *Spec) { s.Tasks[0].DependsOn = []Dependency{{TaskKey: "b"}} }, "cycle: a -> b -> a"},
		{"self dependency", func(s *Spec) { s.Tasks[0].DependsOn = []Dependency{{TaskKey: "a"}} }, "depends on itself"},
		{"unknown dependency", func(s *Spec) { s.Tasks[1].DependsOn = []Dependency{{TaskKey: "zz"}} }, "not a task of this job"},
		{"duplicate key", func(s *Spec) { s.Tasks[1].TaskKey = "a"; s.Tasks[1].DependsOn = nil }, "used by two tasks"},
		{"missing key", func(s *Spec) { s.Tasks[0].TaskKey = "" }, "task_key"},
		{"bad key", func(s *Spec) { s.Tasks[0].TaskKey = "a b" }, "letters, digits"},
		{"no task type", func(s *Spec) { s.Tasks[0].SparkPythonTask = nil }, "exactly one of notebook_task"},
		{"two task types", func(s *Spec) { s.Tasks[0].NotebookTask = &NotebookTask{NotebookPath: "/x"} }, "exactly one of notebook_task"},
		{"unsupported type", func(s *Spec) { s.Tasks[0].SparkPythonTask = nil; s.Tasks[0].SparkJarTask = json.RawMessage(`{}`) }, "not supported"},
		{"no compute", func(s *Spec) { s.Tasks[0].NewCluster = nil }, "exactly one of existing_cluster_id"},
		{"two computes", func(s *Spec) { s.Tasks[0].ExistingClusterID = "c1" }, "exactly one of existing_cluster_id"},
		{"unknown job cluster", func(s *Spec) { s.Tasks[0].NewCluster = nil; s.Tasks[0].JobClusterKey = "jc" }, "not in job_clusters"},
		{"job cluster ok", func(s *Spec) {
			s.Tasks[0].NewCluster = nil
			s.Tasks[0].JobClusterKey = "jc"
			s.JobClusters = []JobCluster{{JobClusterKey: "jc", NewCluster: json.RawMessage(`{"num_workers":1}`)}}
		}, ""},
		{"bad run_if", func(s *Spec) { s.Tasks[1].RunIf = "SOMETIMES" }, "run_if"},
		{"negative retries", func(s *Spec) { s.Tasks[0].MaxRetries = -2 }, "max_retries"},
		{"unlimited retries", func(s *Spec) { s.Tasks[0].MaxRetries = -1 }, ""},
		{"bad cron", func(s *Spec) { s.Schedule = &CronSchedule{QuartzCronExpression: "* * * * *", TimezoneID: "UTC"} }, "Invalid Quartz cron expression"},
		{"bad time zone", func(s *Spec) {
			s.Schedule = &CronSchedule{QuartzCronExpression: "0 0 12 * * ?", TimezoneID: "Mars/Olympus"}
		}, "timezone_id"},
		{"missing time zone", func(s *Spec) { s.Schedule = &CronSchedule{QuartzCronExpression: "0 0 12 * * ?"} }, "timezone_id"},
		{"bad pause status", func(s *Spec) {
			s.Schedule = &CronSchedule{QuartzCronExpression: "0 0 12 * * ?", TimezoneID: "UTC", PauseStatus: "MAYBE"}
		}, "pause_status"},
		{"too many concurrent runs", func(s *Spec) { n := 5000; s.MaxConcurrentRuns = &n }, "max_concurrent_runs"},
		{"missing notebook path", func(s *Spec) { s.Tasks[0].SparkPythonTask = nil; s.Tasks[0].NotebookTask = &NotebookTask{} }, "notebook_path"},
		{"sql task on a warehouse id", func(s *Spec) {
			s.Tasks[0].SparkPythonTask = nil
			s.Tasks[0].NewCluster = nil
			s.Tasks[0].SQLTask = &SQLTask{WarehouseID: "c1", Query: &SQLQuery{QueryText: "select 1"}}
		}, ""},
		{"duplicate parameter", func(s *Spec) { s.Parameters = []JobParameterDef{{Name: "p"}, {Name: "p"}} }, "defined twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := ok()
			c.mutate(&s)
			err := validate(s, false)
			switch {
			case c.msg == "" && err != nil:
				t.Fatalf("valid settings refused: %v", err)
			case c.msg != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", c.msg)
			case c.msg != "" && !strings.Contains(err.Error(), c.msg):
				t.Fatalf("error %q lacks %q", err, c.msg)
			}
		})
	}
}

func TestFindCycleNamesALongerCycle(t *testing.T) {
	tasks := []Task{pyTask("a", "c"), pyTask("b", "a"), pyTask("c", "b"), pyTask("d")}
	got := findCycle(tasks)
	if len(got) != 4 || got[0] != got[3] {
		t.Fatalf("cycle = %v", got)
	}
}
