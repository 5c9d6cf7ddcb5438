package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// kindDestination holds notification destinations (webhooks) that jobs
// name in webhook_notifications.
const kindDestination = "jobs.destination"

// destination is a stored notification destination. The password is kept
// (a webhook may need it) but never returned.
type destination struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	URL         string `json:"url"`
	Username    string `json:"username,omitempty"`
	Password    string `json:"password,omitempty"`
	Created     int64  `json:"created"`
}

type webhookConfig struct {
	URL      string `json:"url,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	URLSet   bool   `json:"url_set,omitempty"`
	UserSet  bool   `json:"username_set,omitempty"`
	PassSet  bool   `json:"password_set,omitempty"`
}

type destinationConfig struct {
	GenericWebhook *webhookConfig   `json:"generic_webhook,omitempty"`
	Email          *json.RawMessage `json:"email,omitempty"`
	Slack          *json.RawMessage `json:"slack,omitempty"`
}

type destinationView struct {
	ID              string            `json:"id"`
	DisplayName     string            `json:"display_name"`
	DestinationType string            `json:"destination_type"`
	Config          destinationConfig `json:"config"`
}

func (d destination) view() destinationView {
	return destinationView{ID: d.ID, DisplayName: d.DisplayName, DestinationType: "WEBHOOK",
		Config: destinationConfig{GenericWebhook: &webhookConfig{URLSet: d.URL != "", UserSet: d.Username != "", PassSet: d.Password != ""}}}
}

func (s *Service) destinationRoutes() []api.Route {
	r := func(pattern, action string, h api.Handler) api.Route {
		return api.Route{Pattern: pattern, Category: "notificationDestinations", Action: action, Handler: h}
	}
	return []api.Route{
		r("POST /api/2.0/notification-destinations", "create", s.createDestination),
		r("GET /api/2.0/notification-destinations", "list", s.listDestinations),
		r("GET /api/2.0/notification-destinations/{id}", "get", s.getDestination),
		r("PATCH /api/2.0/notification-destinations/{id}", "update", s.updateDestination),
		r("DELETE /api/2.0/notification-destinations/{id}", "delete", s.deleteDestination),
	}
}

type destinationRequest struct {
	DisplayName string            `json:"display_name"`
	Config      destinationConfig `json:"config"`
}

func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return api.InvalidParam("generic_webhook.url must be an http or https URL.")
	}
	return nil
}

func (s *Service) createDestination(ctx context.Context, req *api.Request) (any, error) {
	if !principal.MustFrom(ctx).Admin {
		return nil, api.Denied("Only workspace admins can manage notification destinations.")
	}
	var r destinationRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.Config.Email != nil || r.Config.Slack != nil || r.Config.GenericWebhook == nil {
		return nil, api.InvalidParam("Tandem supports generic_webhook destinations only.")
	}
	if err := checkWebhookURL(r.Config.GenericWebhook.URL); err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	d := destination{ID: id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:], DisplayName: r.DisplayName,
		URL: r.Config.GenericWebhook.URL, Username: r.Config.GenericWebhook.Username, Password: r.Config.GenericWebhook.Password}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		d.Created = tx.Now().UnixMilli()
		return store.Insert(tx, kindDestination, d.ID, d)
	})
	if err != nil {
		return nil, err
	}
	return d.view(), nil
}

func (s *Service) listDestinations(ctx context.Context, req *api.Request) (any, error) {
	var out []map[string]any
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindDestination, "", func(_ string, d destination) error {
			out = append(out, map[string]any{"id": d.ID, "display_name": d.DisplayName, "destination_type": "WEBHOOK"})
			return nil
		})
	})
	if out == nil {
		out = []map[string]any{}
	}
	return map[string]any{"results": out}, err
}

func (s *Service) getDestination(ctx context.Context, req *api.Request) (any, error) {
	var d destination
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		d, err = store.Get[destination](tx, kindDestination, req.HTTP.PathValue("id"))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("Notification destination %s does not exist.", req.HTTP.PathValue("id"))
	}
	return d.view(), err
}

func (s *Service) updateDestination(ctx context.Context, req *api.Request) (any, error) {
	if !principal.MustFrom(ctx).Admin {
		return nil, api.Denied("Only workspace admins can manage notification destinations.")
	}
	var r destinationRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var d destination
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		var err error
		d, err = store.Get[destination](tx, kindDestination, req.HTTP.PathValue("id"))
		if err != nil {
			return err
		}
		if r.DisplayName != "" {
			d.DisplayName = r.DisplayName
		}
		if w := r.Config.GenericWebhook; w != nil {
			if w.URL != "" {
				if err := checkWebhookURL(w.URL); err != nil {
					return err
				}
				d.URL = w.URL
			}
			if w.Username != "" {
				d.Username = w.Username
			}
			if w.Password != "" {
				d.Password = w.Password
			}
		}
		return store.Put(tx, kindDestination, d.ID, d)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("Notification destination %s does not exist.", req.HTTP.PathValue("id"))
	}
	return d.view(), err
}

func (s *Service) deleteDestination(ctx context.Context, req *api.Request) (any, error) {
	if !principal.MustFrom(ctx).Admin {
		return nil, api.Denied("Only workspace admins can manage notification destinations.")
	}
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		return tx.Delete(kindDestination, req.HTTP.PathValue("id"))
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.NotFound("Notification destination %s does not exist.", req.HTTP.PathValue("id"))
	}
	return nil, err
}

// checkDestinations refuses webhook ids that name no destination.
func checkDestinations(tx store.Tx, sets ...*WebhookNotifications) error {
	for _, w := range sets {
		if w == nil {
			continue
		}
		for _, list := range [][]Webhook{w.OnStart, w.OnSuccess, w.OnFailure} {
			for _, h := range list {
				if ok, err := store.Exists(tx, kindDestination, h.ID); err != nil {
					return err
				} else if !ok {
					return api.InvalidParam("Webhook notification destination %q does not exist; create it with the Notification Destinations API.", h.ID)
				}
			}
		}
	}
	return nil
}

// notifier sends webhook notifications in the background: a webhook that is
// slow or down never holds up a run. Each send is retried with backoff.
type notifier struct {
	log    *slog.Logger
	store  store.Store
	client *http.Client
	wg     sync.WaitGroup
}

func newNotifier(log *slog.Logger, st store.Store) *notifier {
	return &notifier{log: log, store: st, client: &http.Client{Timeout: 10 * time.Second}}
}

// webhookPayload is the body sent for a run event, in the shape Databricks
// sends to generic webhooks.
type webhookPayload struct {
	EventType   string         `json:"event_type"`
	WorkspaceID int64          `json:"workspace_id"`
	Run         map[string]any `json:"run"`
	Job         map[string]any `json:"job,omitempty"`
}

func (n *notifier) send(ctx context.Context, ids []string, p webhookPayload) {
	for _, id := range ids {
		var d destination
		err := n.store.View(ctx, func(tx store.Tx) error {
			var err error
			d, err = store.Get[destination](tx, kindDestination, id)
			return err
		})
		if err != nil {
			n.log.Warn("webhook destination missing", "destination", id, "run_id", p.Run["run_id"], "err", err)
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			body, _ := json.Marshal(p)
			backoff := time.Second
			for attempt := 1; attempt <= 4; attempt++ {
				err := n.post(ctx, d, body)
				if err == nil {
					return
				}
				n.log.Warn("webhook failed", "destination", d.ID, "event", p.EventType, "attempt", attempt, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff *= 2
			}
		}()
	}
}

func (n *notifier) post(ctx context.Context, d destination, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tandem-Jobs-Webhook/1")
	if d.Username != "" || d.Password != "" {
		req.SetBasicAuth(d.Username, d.Password)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		// The URL may hold credentials in its query: say only where it went.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post to %s: %v", redactURL(d.URL), err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("post to %s: status %d", redactURL(d.URL), resp.StatusCode)
	}
	return nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the webhook"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// wait waits for webhooks in flight (at shutdown and in tests).
func (n *notifier) wait() { n.wg.Wait() }
