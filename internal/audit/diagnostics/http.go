package diagnostics

import (
	"context"
	"errors"
	"strconv"

	"github.com/google/uuid"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/delivery"
	"github.com/tandemdata/tandem/internal/audit/destination/eventhub"
	"github.com/tandemdata/tandem/internal/audit/destination/loganalytics"
	"github.com/tandemdata/tandem/internal/audit/destination/storageaccount"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// Routes are the diagnostic-settings and audit-records endpoints. Their
// own calls are audited in the workspace category.
func (s *Service) Routes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "workspace", Action: action, Handler: h}
	}
	return []api.Route{
		r("GET /api/2.0/tandem/diagnostic-settings", "listDiagnosticSettings", s.list),
		r("GET /api/2.0/tandem/diagnostic-settings/{name}", "getDiagnosticSetting", s.get),
		r("PUT /api/2.0/tandem/diagnostic-settings/{name}", "putDiagnosticSetting", s.put),
		r("DELETE /api/2.0/tandem/diagnostic-settings/{name}", "deleteDiagnosticSetting", s.delete),
		// Reading the log is an auditable act too, but its results are
		// not copied into the log.
		{Pattern: "GET /api/2.0/tandem/audit/records", Category: "workspace", Action: "listAuditRecords", Handler: s.records, NoResult: true},
	}
}

func requireAdmin(ctx context.Context) error {
	if !principal.MustFrom(ctx).Admin {
		return api.Denied("Only workspace admins can manage diagnostic settings and read audit records.")
	}
	return nil
}

// settingView is a setting as the API shows it: credentials redacted,
// delivery status added.
type settingView struct {
	Setting
	Status map[string]delivery.Status `json:"status,omitempty"`
}

func (s *Service) view(st Setting) settingView {
	if st.EventHub != nil {
		eh := *st.EventHub
		if len(eh.Sealed) > 0 {
			eh.ConnectionString = audit.Redacted
		}
		eh.Sealed = nil
		st.EventHub = &eh
	}
	return settingView{Setting: st, Status: s.status(st)}
}

func (s *Service) list(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	settings, err := s.settings(ctx)
	if err != nil {
		return nil, err
	}
	views := make([]settingView, 0, len(settings))
	for _, st := range settings {
		views = append(views, s.view(st))
	}
	return map[string]any{"diagnostic_settings": views}, nil
}

func (s *Service) get(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	name := req.HTTP.PathValue("name")
	var st Setting
	err := s.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		st, err = store.Get[Setting](tx, kindSetting, name)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("Diagnostic setting %q does not exist.", name)
	}
	if err != nil {
		return nil, err
	}
	return s.view(st), nil
}

func (s *Service) put(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var in Setting
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	name := req.HTTP.PathValue("name")
	if in.Name != "" && in.Name != name {
		return nil, api.InvalidParam("The body names setting %q but the path names %q.", in.Name, name)
	}
	in.Name = name
	in.ID, in.CreatedTime, in.UpdatedTime = "", 0, 0
	in = Normalize(in)
	if in.EventHub != nil {
		in.EventHub.Sealed = nil
	}
	prev, others, err := s.current(ctx, name)
	if err != nil {
		return nil, err
	}
	if msg, limit := Validate(in, others); msg != "" {
		if limit {
			return nil, api.Errorf(api.ResourceLimitExceeded, "%s", msg)
		}
		return nil, api.InvalidParam("%s", msg)
	}
	// The credential: sent back redacted means "keep the stored one".
	var secret string
	if eh := in.EventHub; eh != nil {
		secret = eh.ConnectionString
		if secret == audit.Redacted {
			secret = ""
			if prev != nil && prev.EventHub != nil {
				if secret, err = s.unseal(ctx, prev.EventHub.Sealed); err != nil {
					return nil, err
				}
			}
		}
		eh.ConnectionString = ""
	}
	if err := s.check(ctx, in, secret); err != nil {
		return nil, err
	}
	if in.EventHub != nil {
		if in.EventHub.Sealed, err = s.seal(ctx, secret); err != nil {
			return nil, err
		}
	}
	var saved Setting
	_, err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		all, err := store.List[Setting](tx, kindSetting, "")
		if err != nil {
			return err
		}
		var others []Setting
		st := in
		st.ID, st.CreatedTime = uuid.NewString(), tx.Now().UnixMilli()
		for _, o := range all {
			if o.Name == name {
				st.ID, st.CreatedTime = o.ID, o.CreatedTime
				continue
			}
			others = append(others, o)
		}
		// Checked again inside the transaction: another setting may have
		// taken a destination while this one's was being checked.
		if msg, limit := Validate(in, others); msg != "" {
			if limit {
				return api.Errorf(api.ResourceLimitExceeded, "%s", msg)
			}
			return api.InvalidParam("%s", msg)
		}
		st.UpdatedTime = tx.Now().UnixMilli()
		saved = st
		return store.Put(tx, kindSetting, name, st)
	})
	if err != nil {
		return nil, err
	}
	return s.view(saved), nil
}

// current returns the stored setting of that name (nil if none) and the
// others.
func (s *Service) current(ctx context.Context, name string) (*Setting, []Setting, error) {
	all, err := s.settings(ctx)
	if err != nil {
		return nil, nil, err
	}
	var prev *Setting
	var others []Setting
	for i := range all {
		if all[i].Name == name {
			prev = &all[i]
			continue
		}
		others = append(others, all[i])
	}
	return prev, others, nil
}

// check refuses a destination that can be seen not to work now: a storage
// account that refuses writes, an event hub that cannot be reached or that
// refuses the credentials. Failures later are reported by metrics, logs
// and the setting's status, never by failing API calls.
func (s *Service) check(ctx context.Context, st Setting, secret string) error {
	if st.StorageAccount != nil {
		if err := storageaccount.Check(ctx, s.cfg.Account); err != nil {
			return api.InvalidParam("storage_account: %s", err.Error())
		}
	}
	if st.EventHub != nil {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
		defer cancel()
		if err := eventhub.Check(cctx, st.EventHub.config(secret)); err != nil {
			return api.InvalidParam("event_hub: %s. Check bootstrap_servers, use_tls and the connection string.", err.Error())
		}
	}
	return nil
}

func (s *Service) delete(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	name := req.HTTP.PathValue("name")
	_, err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		return tx.Delete(kindSetting, name)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("Diagnostic setting %q does not exist.", name)
	}
	return nil, err
}

type recordsQuery struct {
	StartTime     string `json:"start_time"`
	EndTime       string `json:"end_time"`
	Category      string `json:"category"`
	OperationName string `json:"operation_name"`
	User          string `json:"user"`
	RequestID     string `json:"request_id"`
	Q             string `json:"q"`
	PageToken     string `json:"page_token"`
	PageSize      string `json:"page_size"`
}

type recordsPage struct {
	Records       []*audit.Record `json:"records"`
	NextPageToken string          `json:"next_page_token,omitempty"`
}

func (s *Service) records(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var in recordsQuery
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	q := loganalytics.Query{Category: in.Category, OperationName: in.OperationName, User: in.User,
		RequestID: in.RequestID, Text: in.Q, PageToken: in.PageToken}
	for _, f := range []struct {
		name string
		in   string
		out  *int64
	}{{"start_time", in.StartTime, &q.StartTime}, {"end_time", in.EndTime, &q.EndTime}} {
		if f.in == "" {
			continue
		}
		v, err := strconv.ParseInt(f.in, 10, 64)
		if err != nil || v < 0 {
			return nil, api.InvalidParam("%s must be epoch milliseconds, got %q.", f.name, f.in)
		}
		*f.out = v
	}
	if q.StartTime > 0 && q.EndTime > 0 && q.EndTime <= q.StartTime {
		return nil, api.InvalidParam("end_time must be after start_time.")
	}
	if in.PageSize != "" {
		n, err := strconv.Atoi(in.PageSize)
		if err != nil || n < 1 || n > 1000 {
			return nil, api.InvalidParam("page_size must be between 1 and 1000, got %q.", in.PageSize)
		}
		q.Limit = n
	}
	page, err := s.Query.Find(ctx, q)
	if errors.Is(err, loganalytics.ErrBadPageToken) {
		return nil, api.InvalidParam("page_token is not one this API returned.")
	}
	if err != nil {
		return nil, err
	}
	if page.Records == nil {
		page.Records = []*audit.Record{}
	}
	return recordsPage{Records: page.Records, NextPageToken: page.NextPageToken}, nil
}
