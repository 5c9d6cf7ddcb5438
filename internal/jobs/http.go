package jobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Routes returns the Jobs API under 2.2 (what the SDKs call) and 2.1 and
// 2.0 (older tools), and the notification destinations it uses.
func (s *Service) Routes() []api.Route {
	type ep struct {
		method, path, action string
		h                    api.Handler
	}
	eps := []ep{
		{"POST", "/jobs/create", "create", s.create},
		{"POST", "/jobs/reset", "reset", s.reset},
		{"POST", "/jobs/update", "update", s.update},
		{"POST", "/jobs/delete", "delete", s.delete},
		{"GET", "/jobs/get", "get", s.get},
		{"GET", "/jobs/list", "list", s.list},
		{"POST", "/jobs/run-now", "runNow", s.runNow},
		{"POST", "/jobs/runs/submit", "submitRun", s.submit},
		{"GET", "/jobs/runs/get", "getRun", s.getRun},
		{"GET", "/jobs/runs/list", "listRuns", s.listRuns},
		{"POST", "/jobs/runs/cancel", "cancel", s.cancel},
		{"POST", "/jobs/runs/cancel-all", "cancelAllRuns", s.cancelAll},
		{"GET", "/jobs/runs/get-output", "getRunOutput", s.getOutput},
		{"POST", "/jobs/runs/delete", "deleteRun", s.deleteRun},
		{"POST", "/jobs/runs/repair", "repairRun", s.repair},
	}
	var routes []api.Route
	for _, v := range []string{"2.2", "2.1", "2.0"} {
		for _, e := range eps {
			routes = append(routes, api.Route{Pattern: e.method + " /api/" + v + e.path, Category: "jobs", Action: e.action, Handler: e.h})
		}
	}
	return append(routes, s.destinationRoutes()...)
}

func caller(ctx context.Context) principal.Principal { return principal.MustFrom(ctx) }

func jobNotFound(id int64) error {
	// The SDK turns "Job <id> does not exist." into ErrResourceDoesNotExist.
	return api.NotFound("Job %d does not exist.", id)
}

func runNotFound(id int64) error { return api.NotFound("Run %d does not exist.", id) }

// checkJob checks p's level on a job in tx and returns the job.
func (s *Service) checkJob(tx store.Tx, p principal.Principal, id int64, need permissions.Level) (Job, error) {
	if id <= 0 {
		return Job{}, api.MissingField("job_id")
	}
	j, err := store.Get[Job](tx, kindJob, jobKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return j, jobNotFound(id)
	}
	if err != nil {
		return j, err
	}
	return j, s.Perms.Check(tx, p, "jobs", jobID(id), need)
}

// createRequest is CreateJob: settings plus an access control list.
func splitACL(body []byte) (json.RawMessage, []permissions.Grant, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, nil, api.Errorf(api.MalformedRequest, "Invalid JSON given in the body of the request - expected a JSON object")
	}
	var grants []permissions.Grant
	if raw, ok := m["access_control_list"]; ok {
		if err := json.Unmarshal(raw, &grants); err != nil {
			return nil, nil, api.Errorf(api.MalformedRequest, "Invalid access_control_list: %v", err)
		}
		delete(m, "access_control_list")
	}
	settings, _ := json.Marshal(m)
	return settings, grants, nil
}

// prepare decodes, validates and checks the references of job settings.
func (s *Service) prepare(ctx context.Context, settings json.RawMessage) (Spec, error) {
	sp, err := specOf(settings)
	if err != nil {
		return sp, err
	}
	if err := validate(sp, false); err != nil {
		return sp, err
	}
	return sp, s.checkReferences(ctx, caller(ctx), sp)
}

func (s *Service) create(ctx context.Context, req *api.Request) (any, error) {
	body := req.Body()
	if len(body) == 0 {
		body = []byte("{}")
	}
	settings, grants, err := splitACL(body)
	if err != nil {
		return nil, err
	}
	sp, err := s.prepare(ctx, settings)
	if err != nil {
		return nil, err
	}
	if err := s.Perms.ValidateGrants(ctx, "jobs", grants); err != nil {
		return nil, err
	}
	p := caller(ctx)
	var id int64
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		if err := checkDestinations(tx, webhookSets(sp)...); err != nil {
			return err
		}
		n, err := tx.NextID("jobs.job")
		if err != nil {
			return err
		}
		id = n
		j := Job{JobID: id, CreatorUserName: p.Name, RunAsUserName: runAsName(sp, p), CreatedTime: tx.Now().UnixMilli(), Settings: settings}
		if err := store.Put(tx, kindJob, jobKey(id), j); err != nil {
			return err
		}
		if err := putName(tx, sp.Name, id); err != nil {
			return err
		}
		if err := resetSchedule(tx, id, nil, sp.Schedule); err != nil {
			return err
		}
		owner := permissions.Grant{UserName: p.Name, Level: permissions.IsOwner}
		if p.Kind == principal.ServicePrincipal {
			owner = permissions.Grant{ServicePrincipalName: p.Name, Level: permissions.IsOwner}
		}
		return permissions.Set(tx, "jobs", jobID(id), mergeOwner(owner, grants)...)
	})
	if err != nil {
		return nil, err
	}
	s.nudge()
	return map[string]int64{"job_id": id}, nil
}

// mergeOwner keeps the creator as owner unless the request names another.
func mergeOwner(owner permissions.Grant, grants []permissions.Grant) []permissions.Grant {
	for _, g := range grants {
		if g.Level == permissions.IsOwner {
			return grants
		}
	}
	return append([]permissions.Grant{owner}, grants...)
}

func runAsName(sp Spec, p principal.Principal) string {
	if sp.RunAs != nil {
		if sp.RunAs.UserName != "" {
			return sp.RunAs.UserName
		}
		if sp.RunAs.ServicePrincipalName != "" {
			return sp.RunAs.ServicePrincipalName
		}
	}
	return p.Name
}

func webhookSets(sp Spec) []*WebhookNotifications {
	out := []*WebhookNotifications{sp.WebhookNotifications}
	for _, t := range sp.Tasks {
		out = append(out, t.WebhookNotifications)
	}
	return out
}

func nameKey(name string, id int64) string { return strings.ToLower(name) + "/" + jobKey(id) }

func putName(tx store.Tx, name string, id int64) error {
	if name == "" {
		return nil
	}
	return store.Put(tx, kindJobName, nameKey(name, id), id)
}

func deleteName(tx store.Tx, name string, id int64) error {
	if name == "" {
		return nil
	}
	if err := tx.Delete(kindJobName, nameKey(name, id)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

type resetRequest struct {
	JobID          int64           `json:"job_id"`
	NewSettings    json.RawMessage `json:"new_settings"`
	FieldsToRemove []string        `json:"fields_to_remove"`
}

func (s *Service) reset(ctx context.Context, req *api.Request) (any, error) {
	var r resetRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if len(r.NewSettings) == 0 || string(r.NewSettings) == "null" {
		return nil, api.MissingField("new_settings")
	}
	return nil, s.replaceSettings(ctx, r.JobID, func(json.RawMessage) (json.RawMessage, error) { return r.NewSettings, nil })
}

func (s *Service) update(ctx context.Context, req *api.Request) (any, error) {
	var r resetRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	return nil, s.replaceSettings(ctx, r.JobID, func(old json.RawMessage) (json.RawMessage, error) {
		return mergeSettings(old, r.NewSettings, r.FieldsToRemove)
	})
}

// replaceSettings changes a job's settings in one transaction, after
// validating the result.
func (s *Service) replaceSettings(ctx context.Context, id int64, next func(json.RawMessage) (json.RawMessage, error)) error {
	if id <= 0 {
		return api.MissingField("job_id")
	}
	var old Job
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		old, err = s.checkJob(tx, caller(ctx), id, permissions.CanManage)
		return err
	})
	if err != nil {
		return err
	}
	settings, err := next(old.Settings)
	if err != nil {
		return err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(settings, &m); err != nil {
		return api.Errorf(api.MalformedRequest, "new_settings must be a JSON object.")
	}
	sp, err := s.prepare(ctx, settings)
	if err != nil {
		return err
	}
	_, err = s.Store.Update(ctx, func(tx store.Tx) error {
		j, err := s.checkJob(tx, caller(ctx), id, permissions.CanManage)
		if err != nil {
			return err
		}
		if err := checkDestinations(tx, webhookSets(sp)...); err != nil {
			return err
		}
		oldSpec, _ := specOf(j.Settings)
		if err := deleteName(tx, oldSpec.Name, id); err != nil {
			return err
		}
		if err := putName(tx, sp.Name, id); err != nil {
			return err
		}
		if err := resetSchedule(tx, id, oldSpec.Schedule, sp.Schedule); err != nil {
			return err
		}
		j.Settings = settings
		j.RunAsUserName = runAsName(sp, caller(ctx))
		return store.Put(tx, kindJob, jobKey(id), j)
	})
	if err == nil {
		s.nudge()
	}
	return err
}

// mergeSettings applies jobs/update: top-level fields of newSettings replace
// the old ones, except tasks, job_clusters, parameters and environments,
// which merge by key; fields_to_remove removes top-level fields or
// "tasks/<key>"-style elements.
func mergeSettings(old, newSettings json.RawMessage, remove []string) (json.RawMessage, error) {
	var base map[string]json.RawMessage
	if err := json.Unmarshal(old, &base); err != nil || base == nil {
		base = map[string]json.RawMessage{}
	}
	var upd map[string]json.RawMessage
	if len(newSettings) > 0 && string(newSettings) != "null" {
		if err := json.Unmarshal(newSettings, &upd); err != nil {
			return nil, api.Errorf(api.MalformedRequest, "new_settings must be a JSON object.")
		}
	}
	keyed := map[string]string{"tasks": "task_key", "job_clusters": "job_cluster_key", "parameters": "name", "environments": "environment_key"}
	for field, raw := range upd {
		keyName, ok := keyed[field]
		if !ok || base[field] == nil {
			base[field] = raw
			continue
		}
		merged, err := mergeKeyed(base[field], raw, keyName)
		if err != nil {
			return nil, api.InvalidParam("new_settings.%s: %v", field, err)
		}
		base[field] = merged
	}
	for _, f := range remove {
		field, key, hasKey := strings.Cut(f, "/")
		if !hasKey {
			delete(base, field)
			continue
		}
		keyName, ok := keyed[field]
		if !ok || base[field] == nil {
			return nil, api.InvalidParam("fields_to_remove: %q does not name an element of tasks, job_clusters, parameters or environments.", f)
		}
		var arr []map[string]json.RawMessage
		json.Unmarshal(base[field], &arr)
		out := arr[:0]
		found := false
		for _, e := range arr {
			var k string
			json.Unmarshal(e[keyName], &k)
			if k == key {
				found = true
				continue
			}
			out = append(out, e)
		}
		if !found {
			return nil, api.InvalidParam("fields_to_remove: %s has no element %q.", field, key)
		}
		b, _ := json.Marshal(out)
		base[field] = b
	}
	return json.Marshal(base)
}

func mergeKeyed(old, upd json.RawMessage, keyName string) (json.RawMessage, error) {
	var a, b []map[string]json.RawMessage
	if err := json.Unmarshal(old, &a); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(upd, &b); err != nil {
		return nil, fmt.Errorf("must be a list of objects")
	}
	idx := map[string]int{}
	for i, e := range a {
		var k string
		json.Unmarshal(e[keyName], &k)
		idx[k] = i
	}
	for _, e := range b {
		var k string
		json.Unmarshal(e[keyName], &k)
		if i, ok := idx[k]; ok {
			a[i] = e
			continue
		}
		idx[k] = len(a)
		a = append(a, e)
	}
	return json.Marshal(a)
}

type jobIDRequest struct {
	JobID     int64  `json:"job_id"`
	PageToken string `json:"page_token"`
}

func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	var r jobIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		j, err := s.checkJob(tx, caller(ctx), r.JobID, permissions.CanManage)
		if err != nil {
			return err
		}
		sp, _ := specOf(j.Settings)
		if err := deleteName(tx, sp.Name, r.JobID); err != nil {
			return err
		}
		if err := tx.Delete(kindSchedule, jobKey(r.JobID)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// Runs in progress are canceled; the executor winds them down.
		runs, err := runsOfJob(tx, r.JobID)
		if err != nil {
			return err
		}
		for _, rec := range runs {
			if !Terminal(rec.Run.State.LifeCycleState) {
				if err := requestCancel(tx, rec); err != nil {
					return err
				}
			}
		}
		if err := permissions.Delete(tx, "jobs", jobID(r.JobID)); err != nil {
			return err
		}
		return tx.Delete(kindJob, jobKey(r.JobID))
	})
	if err == nil {
		s.nudge()
	}
	return nil, err
}

// jobView is the API's Job.
type jobView struct {
	JobID           int64           `json:"job_id"`
	CreatorUserName string          `json:"creator_user_name,omitempty"`
	RunAsUserName   string          `json:"run_as_user_name,omitempty"`
	CreatedTime     int64           `json:"created_time"`
	Settings        json.RawMessage `json:"settings"`
	TriggerState    *triggerState   `json:"trigger_state,omitempty"`
}

// triggerState reports the schedule's last tick and the ticks missed while
// the scheduler was down (a Tandem addition to the trigger_state object).
type triggerState struct {
	LastFiredTime int64   `json:"last_fired_time,omitempty"`
	MissedTicks   []int64 `json:"missed_ticks,omitempty"`
}

func (s *Service) view(tx store.Tx, j Job, expand bool) jobView {
	v := jobView{JobID: j.JobID, CreatorUserName: j.CreatorUserName, RunAsUserName: j.RunAsUserName, CreatedTime: j.CreatedTime, Settings: j.Settings}
	if !expand {
		var m map[string]json.RawMessage
		if json.Unmarshal(j.Settings, &m) == nil {
			delete(m, "tasks")
			delete(m, "job_clusters")
			v.Settings, _ = json.Marshal(m)
		}
	}
	if st, err := store.Get[scheduleState](tx, kindSchedule, jobKey(j.JobID)); err == nil && (st.LastTick > 0 || len(st.Missed) > 0) {
		v.TriggerState = &triggerState{LastFiredTime: st.LastFired, MissedTicks: st.Missed}
	}
	return v
}

func (s *Service) get(ctx context.Context, req *api.Request) (any, error) {
	var r jobIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var out jobView
	err := s.Store.View(ctx, func(tx store.Tx) error {
		j, err := s.checkJob(tx, caller(ctx), r.JobID, permissions.CanView)
		out = s.view(tx, j, true)
		return err
	})
	return out, err
}

type listRequest struct {
	Limit       int    `json:"limit"`
	Offset      int    `json:"offset"`
	PageToken   string `json:"page_token"`
	Name        string `json:"name"`
	ExpandTasks bool   `json:"expand_tasks"`
}

func encodeToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeToken(t string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return "", api.InvalidParam("Invalid page_token.")
	}
	return string(b), nil
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	var r listRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.Limit < 0 || r.Limit > 100 || r.Offset < 0 {
		return nil, api.InvalidParam("limit must be between 1 and 100 and offset must not be negative.")
	}
	if r.Limit == 0 {
		r.Limit = 20
	}
	after := ""
	if r.PageToken != "" {
		var err error
		if after, err = decodeToken(r.PageToken); err != nil {
			return nil, err
		}
	}
	p := caller(ctx)
	var jobs []jobView
	more := false
	err := s.Store.View(ctx, func(tx store.Tx) error {
		skip := r.Offset
		visit := func(j Job) (bool, error) {
			if err := s.Perms.Check(tx, p, "jobs", jobID(j.JobID), permissions.CanView); err != nil {
				var e *api.Error
				if errors.As(err, &e) && e.Code == api.PermissionDenied {
					return true, nil
				}
				return false, err
			}
			if skip > 0 {
				skip--
				return true, nil
			}
			if len(jobs) == r.Limit {
				more = true
				return false, nil
			}
			jobs = append(jobs, s.view(tx, j, r.ExpandTasks))
			return true, nil
		}
		if r.Name != "" {
			return store.ScanPrefix(tx, kindJobName, strings.ToLower(r.Name)+"/", func(key string, id int64) error {
				if jobKey(id) <= after {
					return nil
				}
				j, err := store.Get[Job](tx, kindJob, jobKey(id))
				if err != nil {
					return err
				}
				cont, err := visit(j)
				if err == nil && !cont {
					return store.ErrStopScan
				}
				return err
			})
		}
		return tx.Scan(kindJob, "", after, func(key string, raw json.RawMessage) error {
			var j Job
			if err := json.Unmarshal(raw, &j); err != nil {
				return err
			}
			cont, err := visit(j)
			if err == nil && !cont {
				return store.ErrStopScan
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	out := map[string]any{"has_more": more}
	if len(jobs) > 0 {
		out["jobs"] = jobs
	}
	if more {
		out["next_page_token"] = encodeToken(jobKey(jobs[len(jobs)-1].JobID))
	}
	return out, nil
}

// runNowRequest is RunNow.
type runNowRequest struct {
	JobID            int64             `json:"job_id"`
	IdempotencyToken string            `json:"idempotency_token"`
	JobParameters    map[string]string `json:"job_parameters"`
	NotebookParams   map[string]string `json:"notebook_params"`
	PythonParams     []string          `json:"python_params"`
	JarParams        []string          `json:"jar_params"`
	SparkSubmitParam []string          `json:"spark_submit_params"`
	PythonNamed      map[string]string `json:"python_named_params"`
	SQLParams        map[string]string `json:"sql_params"`
	Only             []string          `json:"only"`
	Queue            *QueueSettings    `json:"queue"`
}

func (r runNowRequest) params() runParams {
	return runParams{JobParameters: r.JobParameters, NotebookParams: r.NotebookParams, PythonParams: r.PythonParams,
		SparkSubmitParams: r.SparkSubmitParam, PythonNamedParams: r.PythonNamed, SQLParams: r.SQLParams, JarParams: r.JarParams}
}

func (s *Service) runNow(ctx context.Context, req *api.Request) (any, error) {
	var r runNowRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if len(r.IdempotencyToken) > 64 {
		return nil, api.InvalidParam("idempotency_token is longer than 64 characters.")
	}
	p := caller(ctx)
	var rec *record
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		j, err := s.checkJob(tx, p, r.JobID, permissions.CanManageRun)
		if err != nil {
			return err
		}
		if r.IdempotencyToken != "" {
			if id, err := store.Get[int64](tx, kindIdem, jobKey(r.JobID)+"/"+r.IdempotencyToken); err == nil {
				got, err := store.Get[record](tx, kindRun, runKey(id))
				rec = &got
				return err
			}
		}
		sp, err := specOf(j.Settings)
		if err != nil {
			return err
		}
		if err := validate(sp, true); err != nil {
			return err
		}
		if r.Queue != nil {
			sp.Queue = r.Queue
		}
		for k := range r.JobParameters {
			found := false
			for _, d := range sp.Parameters {
				found = found || d.Name == k
			}
			if !found && len(sp.Parameters) > 0 {
				return api.InvalidParam("Job parameter %q is not defined by the job.", k)
			}
		}
		rec, err = s.newRun(tx, &j, sp, p, "ONE_TIME", r.params(), r.Only)
		if err != nil {
			return err
		}
		if r.IdempotencyToken != "" {
			return store.Put(tx, kindIdem, jobKey(r.JobID)+"/"+r.IdempotencyToken, rec.Run.RunID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.nudge()
	return map[string]int64{"run_id": rec.Run.RunID, "number_in_job": rec.Run.NumberInJob}, nil
}

// submitRequest is SubmitRun.
type submitRequest struct {
	RunName              string                `json:"run_name"`
	Tasks                []Task                `json:"tasks"`
	TimeoutSeconds       int64                 `json:"timeout_seconds"`
	IdempotencyToken     string                `json:"idempotency_token"`
	WebhookNotifications *WebhookNotifications `json:"webhook_notifications"`
	Queue                *QueueSettings        `json:"queue"`
	RunAs                *RunAs                `json:"run_as"`
	JobClusters          []JobCluster          `json:"job_clusters"`
}

func (s *Service) submit(ctx context.Context, req *api.Request) (any, error) {
	var r submitRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	sp := Spec{Name: r.RunName, Tasks: r.Tasks, TimeoutSeconds: r.TimeoutSeconds, WebhookNotifications: r.WebhookNotifications,
		Queue: r.Queue, RunAs: r.RunAs, JobClusters: r.JobClusters}
	if err := validate(sp, true); err != nil {
		return nil, err
	}
	p := caller(ctx)
	if err := s.checkReferences(ctx, p, sp); err != nil {
		return nil, err
	}
	var rec *record
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := checkDestinations(tx, webhookSets(sp)...); err != nil {
			return err
		}
		if r.IdempotencyToken != "" {
			if id, err := store.Get[int64](tx, kindIdem, "submit/"+p.ID+"/"+r.IdempotencyToken); err == nil {
				got, err := store.Get[record](tx, kindRun, runKey(id))
				rec = &got
				return err
			}
		}
		var err error
		rec, err = s.newRun(tx, nil, sp, p, "ONE_TIME", runParams{}, nil)
		if err != nil {
			return err
		}
		if r.IdempotencyToken != "" {
			return store.Put(tx, kindIdem, "submit/"+p.ID+"/"+r.IdempotencyToken, rec.Run.RunID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.nudge()
	return map[string]int64{"run_id": rec.Run.RunID}, nil
}

// loadRun finds a run by its id or one of its task runs' ids, and checks p
// may see it (at need on its job; a one-time submit: its creator or admins).
func (s *Service) loadRun(tx store.Tx, p principal.Principal, id int64, need permissions.Level) (*record, error) {
	if id <= 0 {
		return nil, api.MissingField("run_id")
	}
	rec, err := store.Get[record](tx, kindRun, runKey(id))
	if errors.Is(err, store.ErrNotFound) {
		parent, perr := store.Get[int64](tx, kindTaskRun, strconv.FormatInt(id, 10))
		if perr != nil {
			return nil, runNotFound(id)
		}
		rec, err = store.Get[record](tx, kindRun, runKey(parent))
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, runNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	if rec.Run.JobID != 0 {
		if ok, err := store.Exists(tx, kindJob, jobKey(rec.Run.JobID)); err != nil {
			return nil, err
		} else if ok {
			return &rec, s.Perms.Check(tx, p, "jobs", jobID(rec.Run.JobID), need)
		}
	}
	if !p.Admin && rec.Run.CreatorUserName != p.Name {
		return nil, api.Denied("%s may not see run %d.", p.Name, id)
	}
	return &rec, nil
}

type runIDRequest struct {
	RunID          int64 `json:"run_id"`
	IncludeHistory bool  `json:"include_history"`
}

func (s *Service) getRun(ctx context.Context, req *api.Request) (any, error) {
	var r runIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var out Run
	err := s.Store.View(ctx, func(tx store.Tx) error {
		rec, err := s.loadRun(tx, caller(ctx), r.RunID, permissions.CanView)
		if err != nil {
			return err
		}
		out = rec.Run
		if !r.IncludeHistory {
			out.RepairHistory = nil
		}
		return nil
	})
	return out, err
}

type listRunsRequest struct {
	JobID         int64  `json:"job_id"`
	ActiveOnly    bool   `json:"active_only"`
	CompletedOnly bool   `json:"completed_only"`
	Offset        int    `json:"offset"`
	Limit         int    `json:"limit"`
	PageToken     string `json:"page_token"`
	RunType       string `json:"run_type"`
	ExpandTasks   bool   `json:"expand_tasks"`
	StartTimeFrom int64  `json:"start_time_from"`
	StartTimeTo   int64  `json:"start_time_to"`
}

func (s *Service) listRuns(ctx context.Context, req *api.Request) (any, error) {
	var r listRunsRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.ActiveOnly && r.CompletedOnly {
		return nil, api.InvalidParam("active_only and completed_only cannot both be true.")
	}
	if r.Limit < 0 || r.Limit > 25 || r.Offset < 0 {
		return nil, api.InvalidParam("limit must be between 0 and 25 and offset must not be negative.")
	}
	if r.Limit == 0 {
		r.Limit = 25
	}
	after := ""
	if r.PageToken != "" {
		var err error
		if after, err = decodeToken(r.PageToken); err != nil {
			return nil, err
		}
	}
	p := caller(ctx)
	var runs []Run
	more := false
	lastKey := ""
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if r.JobID != 0 {
			if _, err := s.checkJob(tx, p, r.JobID, permissions.CanView); err != nil {
				return err
			}
		}
		allowed := map[int64]bool{}
		skip := r.Offset
		return tx.Scan(kindRun, "", after, func(key string, raw json.RawMessage) error {
			var rec record
			if err := json.Unmarshal(raw, &rec); err != nil {
				return err
			}
			run := rec.Run
			switch {
			case r.JobID != 0 && run.JobID != r.JobID,
				r.ActiveOnly && Terminal(run.State.LifeCycleState),
				r.CompletedOnly && !Terminal(run.State.LifeCycleState),
				r.RunType != "" && run.RunType != r.RunType,
				r.StartTimeFrom > 0 && run.StartTime < r.StartTimeFrom,
				r.StartTimeTo > 0 && run.StartTime > r.StartTimeTo:
				return nil
			}
			visible, seen := allowed[run.JobID]
			if !seen {
				visible = p.Admin
				if !visible && run.JobID != 0 {
					visible = s.Perms.Check(tx, p, "jobs", jobID(run.JobID), permissions.CanView) == nil
				}
				allowed[run.JobID] = visible
			}
			if run.JobID == 0 && !p.Admin {
				visible = run.CreatorUserName == p.Name
			}
			if !visible {
				return nil
			}
			if skip > 0 {
				skip--
				return nil
			}
			if len(runs) == r.Limit {
				more = true
				return store.ErrStopScan
			}
			if !r.ExpandTasks {
				run.Tasks = nil
				run.JobClusters = nil
			}
			run.RepairHistory = nil
			runs = append(runs, run)
			lastKey = key
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := map[string]any{"has_more": more}
	if len(runs) > 0 {
		out["runs"] = runs
	}
	if more {
		out["next_page_token"] = encodeToken(lastKey)
	}
	return out, nil
}

// kindCancel holds cancel requests, apart from the run record, so the API
// never races the executor's writes of the record.
const kindCancel = "jobs.run.cancel"

func requestCancel(tx store.Tx, rec *record) error {
	return store.Put(tx, kindCancel, runKey(rec.Run.RunID), rec.Run.RunID)
}

func (s *Service) cancel(ctx context.Context, req *api.Request) (any, error) {
	var r runIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		rec, err := s.loadRun(tx, caller(ctx), r.RunID, permissions.CanManageRun)
		if err != nil {
			return err
		}
		if Terminal(rec.Run.State.LifeCycleState) {
			return nil // canceling a finished run does nothing, as in Databricks
		}
		return requestCancel(tx, rec)
	})
	if err == nil {
		s.nudge()
	}
	return nil, err
}

func (s *Service) cancelAll(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		JobID         int64 `json:"job_id"`
		AllQueuedRuns bool  `json:"all_queued_runs"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.JobID == 0 && !r.AllQueuedRuns {
		return nil, api.InvalidParam("Give job_id, or all_queued_runs to cancel every queued run.")
	}
	p := caller(ctx)
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		if r.JobID != 0 {
			if _, err := s.checkJob(tx, p, r.JobID, permissions.CanManageRun); err != nil {
				return err
			}
			runs, err := runsOfJob(tx, r.JobID)
			if err != nil {
				return err
			}
			for _, rec := range runs {
				if !Terminal(rec.Run.State.LifeCycleState) && (!r.AllQueuedRuns || rec.Run.State.LifeCycleState == Queued) {
					if err := requestCancel(tx, rec); err != nil {
						return err
					}
				}
			}
			return nil
		}
		return store.ScanPrefix(tx, kindActive, "", func(_ string, e activeEntry) error {
			if !e.Queued {
				return nil
			}
			rec, err := store.Get[record](tx, kindRun, runKey(e.RunID))
			if err != nil || rec.Run.State.LifeCycleState != Queued {
				return err
			}
			if !p.Admin {
				if rec.Run.JobID == 0 || s.Perms.Check(tx, p, "jobs", jobID(rec.Run.JobID), permissions.CanManageRun) != nil {
					return nil
				}
			}
			return requestCancel(tx, &rec)
		})
	})
	if err == nil {
		s.nudge()
	}
	return nil, err
}

// maxLogs bounds the logs kept and returned for a task run: the tail is kept.
const maxLogs = 5 << 20

func (s *Service) getOutput(ctx context.Context, req *api.Request) (any, error) {
	var r runIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var out map[string]any
	err := s.Store.View(ctx, func(tx store.Tx) error {
		rec, err := s.loadRun(tx, caller(ctx), r.RunID, permissions.CanView)
		if err != nil {
			return err
		}
		var task *RunTask
		for i := range rec.Run.Tasks {
			if rec.Run.Tasks[i].RunID == r.RunID {
				task = &rec.Run.Tasks[i]
			}
		}
		if task == nil {
			if len(rec.Run.Tasks) != 1 {
				return api.InvalidParam("Retrieving the output of runs with multiple tasks is not supported. Call get-output with the run_id of one task run (run.tasks[].run_id).")
			}
			task = &rec.Run.Tasks[0]
		}
		meta := rec.Run
		meta.Tasks = []RunTask{*task}
		meta.RunID, meta.State, meta.StartTime, meta.EndTime = task.RunID, task.State, task.StartTime, task.EndTime
		out = map[string]any{"metadata": meta}
		ex := rec.Exec[task.TaskKey]
		if ex == nil {
			return nil
		}
		o := ex.Output
		if task.NotebookTask != nil && (o.NotebookResult != "" || Terminal(task.State.LifeCycleState)) {
			out["notebook_output"] = map[string]any{"result": o.NotebookResult, "truncated": o.Truncated}
		}
		if o.Logs != "" {
			out["logs"] = o.Logs
			out["logs_truncated"] = o.LogsTruncated
		}
		if o.Error != "" {
			out["error"] = o.Error
		}
		if o.ErrorTrace != "" {
			out["error_trace"] = o.ErrorTrace
		}
		return nil
	})
	return out, err
}

func (s *Service) deleteRun(ctx context.Context, req *api.Request) (any, error) {
	var r runIDRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		rec, err := s.loadRun(tx, caller(ctx), r.RunID, permissions.CanManageRun)
		if err != nil {
			return err
		}
		if !Terminal(rec.Run.State.LifeCycleState) {
			return api.Errorf(api.InvalidState, "Run %d is still active; cancel it before deleting it.", rec.Run.RunID)
		}
		if rec.Run.RunID != r.RunID {
			return api.InvalidParam("Run %d is a task run; delete its parent run %d.", r.RunID, rec.Run.RunID)
		}
		for _, t := range rec.Run.Tasks {
			if err := tx.Delete(kindTaskRun, strconv.FormatInt(t.RunID, 10)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if rec.Run.JobID != 0 {
			if err := tx.Delete(kindRunByJob, jobKey(rec.Run.JobID)+"/"+runKey(rec.Run.RunID)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if err := deleteActive(tx, rec.Run.JobID, rec.Run.RunID); err != nil {
			return err
		}
		if err := deleteIfPresent(tx, kindCancel, runKey(rec.Run.RunID)); err != nil {
			return err
		}
		return tx.Delete(kindRun, runKey(rec.Run.RunID))
	})
	return nil, err
}

type repairRequest struct {
	RunID               int64             `json:"run_id"`
	RerunTasks          []string          `json:"rerun_tasks"`
	RerunAllFailedTasks bool              `json:"rerun_all_failed_tasks"`
	RerunDependentTasks bool              `json:"rerun_dependent_tasks"`
	LatestRepairID      int64             `json:"latest_repair_id"`
	JobParameters       map[string]string `json:"job_parameters"`
	NotebookParams      map[string]string `json:"notebook_params"`
	PythonParams        []string          `json:"python_params"`
	SparkSubmitParams   []string          `json:"spark_submit_params"`
	PythonNamedParams   map[string]string `json:"python_named_params"`
	SQLParams           map[string]string `json:"sql_params"`
}

func (s *Service) repair(ctx context.Context, req *api.Request) (any, error) {
	var r repairRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if len(r.RerunTasks) == 0 && !r.RerunAllFailedTasks {
		return nil, api.InvalidParam("Give rerun_tasks or rerun_all_failed_tasks.")
	}
	var repairID int64
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		rec, err := s.loadRun(tx, caller(ctx), r.RunID, permissions.CanManageRun)
		if err != nil {
			return err
		}
		if !Terminal(rec.Run.State.LifeCycleState) {
			return api.Errorf(api.InvalidState, "Run %d is still active; only finished runs can be repaired.", rec.Run.RunID)
		}
		if n := len(rec.Run.RepairHistory); n > 0 && r.LatestRepairID != 0 && rec.Run.RepairHistory[n-1].ID != r.LatestRepairID {
			return api.InvalidParam("latest_repair_id %d is not the run's latest repair.", r.LatestRepairID)
		}
		rerun := map[string]bool{}
		for _, k := range r.RerunTasks {
			found := false
			for _, t := range rec.Run.Tasks {
				found = found || t.TaskKey == k
			}
			if !found {
				return api.InvalidParam("Task %q is not a task of run %d.", k, rec.Run.RunID)
			}
			rerun[k] = true
		}
		if r.RerunAllFailedTasks {
			for _, t := range rec.Run.Tasks {
				if t.State.ResultState != Success && t.State.ResultState != Excluded {
					rerun[t.TaskKey] = true
				}
			}
		}
		if r.RerunDependentTasks || r.RerunAllFailedTasks {
			for changed := true; changed; {
				changed = false
				for _, t := range rec.Run.Tasks {
					for _, d := range t.DependsOn {
						if rerun[d.TaskKey] && !rerun[t.TaskKey] {
							rerun[t.TaskKey] = true
							changed = true
						}
					}
				}
			}
		}
		if len(rerun) == 0 {
			return api.InvalidParam("Run %d has no failed tasks to repair.", rec.Run.RunID)
		}
		now := tx.Now().UnixMilli()
		if len(rec.Run.RepairHistory) == 0 {
			rec.Run.RepairHistory = append(rec.Run.RepairHistory, RepairHistoryItem{ID: rec.Run.RunID, Type: "ORIGINAL",
				StartTime: rec.Run.StartTime, EndTime: rec.Run.EndTime, State: rec.Run.State})
		}
		id, err := tx.NextID("jobs.run")
		if err != nil {
			return err
		}
		repairID = id
		item := RepairHistoryItem{ID: id, Type: "REPAIR", StartTime: now, State: RunState{LifeCycleState: Pending}}
		keys := make([]string, 0, len(rerun))
		for k := range rerun {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i := range rec.Run.Tasks {
			t := &rec.Run.Tasks[i]
			if !rerun[t.TaskKey] {
				continue
			}
			tid, err := tx.NextID("jobs.run")
			if err != nil {
				return err
			}
			t.RunID = tid
			t.State = RunState{LifeCycleState: Pending, StateMessage: "Waiting to start (repair)."}
			t.StartTime, t.EndTime, t.AttemptNumber, t.ClusterInstance = 0, 0, 0, nil
			t.ExecutionDuration, t.SetupDuration = 0, 0
			rec.Exec[t.TaskKey] = &TaskExec{}
			item.TaskRunIDs = append(item.TaskRunIDs, tid)
			if err := store.Put(tx, kindTaskRun, strconv.FormatInt(tid, 10), rec.Run.RunID); err != nil {
				return err
			}
		}
		rec.Run.RepairHistory = append(rec.Run.RepairHistory, item)
		if r.JobParameters != nil {
			rec.Params.JobParameters = r.JobParameters
		}
		if r.NotebookParams != nil {
			rec.Params.NotebookParams = r.NotebookParams
		}
		if r.PythonParams != nil {
			rec.Params.PythonParams = r.PythonParams
		}
		if r.SparkSubmitParams != nil {
			rec.Params.SparkSubmitParams = r.SparkSubmitParams
		}
		if r.PythonNamedParams != nil {
			rec.Params.PythonNamedParams = r.PythonNamedParams
		}
		if r.SQLParams != nil {
			rec.Params.SQLParams = r.SQLParams
		}
		rec.Run.State = RunState{LifeCycleState: Pending, StateMessage: "Repairing."}
		rec.Run.EndTime = 0
		rec.CancelRequested, rec.TimedOut, rec.Released = false, false, false
		rec.Notified = nil
		if rec.Spec.TimeoutSeconds > 0 {
			rec.Deadline = now + rec.Spec.TimeoutSeconds*1000
		}
		if err := tx.Delete(kindCancel, runKey(rec.Run.RunID)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := store.Put(tx, kindRun, runKey(rec.Run.RunID), rec); err != nil {
			return err
		}
		return putActive(tx, rec)
	})
	if err != nil {
		return nil, err
	}
	s.nudge()
	return map[string]int64{"repair_id": repairID}, nil
}
