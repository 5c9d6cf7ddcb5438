package diagnostics_test

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandemdata/tandem/internal/audit/destination/eventhub"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

const hubSecret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0LWtleQ=="

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startHub starts an in-process Kafka cluster that, like Event Hubs, wants
// SASL PLAIN with user $ConnectionString.
func startHub(t *testing.T, port int) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation(),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", "$ConnectionString", hubSecret))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// consume reads every record of topic until want request ids were seen.
func consume(t *testing.T, addr, topic string, want map[string]bool) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SASL(plainAuth()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if !json.Valid(r.Value) || !strings.HasPrefix(string(r.Value), `{"records":[`) {
				t.Errorf("message is not a records envelope: %.200s", r.Value)
			}
			recs, err := eventhub.Decode(r.Value)
			if err != nil {
				t.Errorf("decode envelope: %v", err)
			}
			for _, rec := range recs {
				seen[rec.Properties.RequestID]++
			}
		})
		done := true
		for id := range want {
			done = done && seen[id] > 0
		}
		if done {
			break
		}
	}
	return seen
}

func TestEventHubReceivesRecordsAndRefusesBadAddressOrCredentials(t *testing.T) {
	port := freePort(t)
	hub := startHub(t, port)
	defer func() { hub.Close() }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	srv := servertest.Start(t)

	put := func(eh map[string]any) servertest.Response {
		return srv.Do(srv.AdminToken, "PUT", "/api/2.0/tandem/diagnostic-settings/hub", map[string]any{
			"logs": []map[string]any{{"category": "accounts", "enabled": true}}, "event_hub": eh})
	}
	// Refused at configuration: nothing listening, bad credentials, bad address.
	for name, eh := range map[string]map[string]any{
		"closed port":       {"bootstrap_servers": "127.0.0.1:" + strconv.Itoa(freePort(t)), "connection_string": hubSecret, "use_tls": false},
		"wrong credentials": {"bootstrap_servers": addr, "connection_string": "Endpoint=sb://x/;SharedAccessKey=wrong", "use_tls": false},
		"not host:port":     {"bootstrap_servers": "kafka.example", "use_tls": false},
	} {
		resp := put(eh)
		if resp.Status != 400 || resp.JSON(t)["error_code"] != "INVALID_PARAMETER_VALUE" {
			t.Errorf("%s: %d %s", name, resp.Status, resp.Body)
		}
		if strings.Contains(string(resp.Body), "SharedAccessKey") {
			t.Errorf("%s: the error shows the connection string: %s", name, resp.Body)
		}
	}
	resp := put(map[string]any{"bootstrap_servers": addr, "connection_string": hubSecret, "use_tls": false})
	if resp.Status != 200 {
		t.Fatalf("put event hub setting: %d %s", resp.Status, resp.Body)
	}
	// The credential never comes back, nor reaches the audit log.
	get := srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/diagnostic-settings/hub", nil)
	if strings.Contains(string(get.Body), "SharedAccessKey") || strings.Contains(string(resp.Body), "SharedAccessKey") ||
		!strings.Contains(string(get.Body), `"connection_string":"[REDACTED]"`) {
		t.Errorf("GET shows the credential: %s", get.Body)
	}
	putRecs := findRecords(t, srv, map[string][]string{"operation_name": {"putDiagnosticSetting"}}, 4)
	for _, r := range putRecs {
		if b, _ := json.Marshal(r); strings.Contains(string(b), "SharedAccessKey") {
			t.Errorf("audit record holds the credential: %s", b)
		}
	}

	want := map[string]bool{}
	for i := 0; i < 5; i++ {
		want[srv.Do(srv.AdminToken, "GET", "/api/2.0/preview/scim/v2/Me", nil).Header.Get("X-Request-Id")] = true
	}
	seen := consume(t, addr, "insights-logs-accounts", want)
	for id := range want {
		if seen[id] == 0 {
			t.Errorf("request %s not delivered to the event hub", id)
		}
	}

	// The hub goes down: API calls do not wait, the backlog shows in the
	// setting's status and the metrics, and drains when the hub returns.
	hub.Close()
	down := map[string]bool{}
	for i := 0; i < 5; i++ {
		start := time.Now()
		r := srv.Do(srv.AdminToken, "GET", "/api/2.0/preview/scim/v2/Me", nil)
		if r.Status != 200 || time.Since(start) > 2*time.Second {
			t.Fatalf("API call while the hub is down: %d after %s", r.Status, time.Since(start))
		}
		down[r.Header.Get("X-Request-Id")] = true
	}
	deadline := time.Now().Add(20 * time.Second)
	var status map[string]any
	for time.Now().Before(deadline) {
		var v struct {
			Status map[string]map[string]any `json:"status"`
		}
		json.Unmarshal(srv.Do(srv.AdminToken, "GET", "/api/2.0/tandem/diagnostic-settings/hub", nil).Body, &v)
		status = v.Status["event_hub"]
		if status["last_error"] != nil && status["lag_seconds"].(float64) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status["last_error"] == nil || status["lag_seconds"].(float64) <= 0 {
		t.Errorf("status while the hub is down: %v", status)
	}
	metrics := string(srv.Do(srv.AdminToken, "GET", "/metrics", nil).Body)
	for _, m := range []string{`tandem_audit_destination_up{destination="event_hub",setting="hub"} 0`,
		`tandem_audit_destination_lag_seconds{destination="event_hub",setting="hub"}`,
		`tandem_audit_destination_errors_total{destination="event_hub",setting="hub"}`,
		`tandem_audit_records_written_total{category="accounts"}`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	hub = startHub(t, port)
	seen = consume(t, addr, "insights-logs-accounts", down)
	for id := range down {
		if seen[id] == 0 {
			t.Errorf("request %s made while the hub was down was not delivered after it returned", id)
		}
	}
}

func plainAuth() sasl {
	return plainMech()
}
