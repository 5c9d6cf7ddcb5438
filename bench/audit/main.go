// Command audit benchmarks Tandem's audit pipeline, in one process:
//
//  1. throughput: records per second appended concurrently to the durable
//     journal (each append returns once its record is fsynced);
//  2. delivery latency: records appended at a steady rate are delivered by
//     the real delivery loops to a storage account (local directory, with
//     digests), to a Kafka cluster (franz-go's kfake, in-process) and to the
//     query store; latency is from the append's return to the
//     destination's acknowledgement;
//  3. hook overhead: the same trivial API call through the API middleware
//     with the journal as its auditor and with a no-op auditor; the
//     difference is what auditing adds to a call.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/delivery"
	"github.com/tandemdata/tandem/internal/audit/destination/eventhub"
	"github.com/tandemdata/tandem/internal/audit/destination/loganalytics"
	"github.com/tandemdata/tandem/internal/audit/destination/storageaccount"
	"github.com/tandemdata/tandem/internal/audit/digest"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/account"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
)

func main() {
	var (
		duration    = flag.Duration("duration", 10*time.Second, "time per measurement")
		concurrency = flag.Int("c", 64, "concurrent appenders / API callers")
		rate        = flag.Int("rate", 5000, "records per second for the delivery latency run")
		callRate    = flag.Int("call-rate", 5000, "API calls per second offered in the hook overhead run")
		accountKind = flag.String("account", "local", "storage account of the delivery run: local (a directory with append), "+
			"account (the real storage account: LRS, service encryption, Append), account-rewrite (the same without Append: read and put back)")
		latencyOnly = flag.Bool("latency-only", false, "run only the delivery latency measurement")
		digestEvery = flag.Duration("digest-period", time.Second, "digest period of the storage account's chain (each seal hashes the period's blobs whole; servers default to 1h)")
	)
	flag.Parse()
	dir, err := os.MkdirTemp("", "tandem-bench-audit-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	fmt.Printf("Tandem audit pipeline benchmark (%d concurrent, %s per run, storage account: %s)\n\n", *concurrency, *duration, *accountKind)
	if !*latencyOnly {
		throughput(filepath.Join(dir, "throughput"), *concurrency, *duration)
	}
	latency(filepath.Join(dir, "latency"), *rate, *duration, *accountKind, *digestEvery)
	if !*latencyOnly {
		hook(filepath.Join(dir, "hook"), *callRate, *duration)
	}
}

func record(i int) *audit.Record {
	r := audit.New("/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/TANDEM/PROVIDERS/MICROSOFT.DATABRICKS/WORKSPACES/TANDEM",
		[]string{"clusters", "jobs", "accounts", "workspace"}[i%4], "create", time.Now())
	r.Identity.Email = "ada@example.com"
	r.Properties.SourceIPAddress = "127.0.0.1"
	r.Properties.UserAgent = "databricks-sdk-go/0.80.0"
	r.Properties.RequestID = fmt.Sprintf("req-%d", i)
	r.Properties.RequestParams = map[string]string{"cluster_name": "etl", "spark_version": "15.4.x-scala2.12", "num_workers": "8"}
	r.Properties.Response.StatusCode = 200
	r.Properties.Response.Result = `{"cluster_id":"0101-123456-abcdefgh"}`
	return r
}

func throughput(dir string, c int, d time.Duration) {
	j, err := audit.OpenJournal(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer j.Close()
	var n atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				if err := j.Append(context.Background(), record(i)); err != nil {
					log.Fatal(err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("1. journal throughput: %d records in %s = %.0f records/s (each fsynced before Append returns)\n\n",
		n.Load(), el.Round(time.Millisecond), float64(n.Load())/el.Seconds())
}

// timed wraps a destination and records each record's delivery latency.
type timed struct {
	dest     delivery.Destination
	appended *sync.Map // logId -> time.Time
	mu       sync.Mutex
	lat      []time.Duration
}

func (t *timed) Deliver(ctx context.Context, recs []*audit.Record, now time.Time) error {
	if err := t.dest.Deliver(ctx, recs, now); err != nil {
		return err
	}
	done := time.Now()
	t.mu.Lock()
	for _, r := range recs {
		if at, ok := t.appended.Load(r.Properties.LogID); ok {
			t.lat = append(t.lat, done.Sub(at.(time.Time)))
		}
	}
	t.mu.Unlock()
	return nil
}

func (t *timed) Seal(ctx context.Context, now time.Time) error {
	if s, ok := t.dest.(delivery.Sealer); ok {
		return s.Seal(ctx, now)
	}
	return nil
}

// putOnly hides a backend's Append (the destination then reads the hour's
// blob and puts it back whole).
type putOnly struct{ storage.Backend }

// openAccount opens the storage account the delivery run writes to.
func openAccount(dir, kind string) (storage.Backend, func()) {
	if kind == "local" {
		b, err := local.New(filepath.Join(dir, "storage"))
		if err != nil {
			log.Fatal(err)
		}
		return b, func() {}
	}
	st, err := sqlstore.Open(context.Background(), filepath.Join(dir, "meta.db"))
	if err != nil {
		log.Fatal(err)
	}
	ring, err := keys.OpenKeyring(filepath.Join(dir, "account-keys"))
	if err != nil {
		log.Fatal(err)
	}
	acc, err := account.Open(context.Background(), account.Options{Name: "root", Dir: filepath.Join(dir, "storage"), Store: st, Keys: ring,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	closeAll := func() { acc.Close(); st.Close() }
	switch kind {
	case "account":
		return acc, closeAll
	case "account-rewrite":
		return putOnly{acc}, closeAll
	}
	log.Fatalf("-account %q: want local, account or account-rewrite", kind)
	return nil, nil
}

func latency(dir string, rate int, d time.Duration, accountKind string, digestPeriod time.Duration) {
	j, err := audit.OpenJournal(filepath.Join(dir, "journal"))
	if err != nil {
		log.Fatal(err)
	}
	defer j.Close()
	acct, closeAcct := openAccount(dir, accountKind)
	defer closeAcct()
	key, err := digest.LoadOrCreateKey(filepath.Join(dir, "keys"))
	if err != nil {
		log.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	hub, err := eventhub.New(eventhub.Config{Brokers: cluster.ListenAddrs()})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	query, err := loganalytics.Open(filepath.Join(dir, "records.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer query.Close()
	rid := record(0).ResourceID
	appended := &sync.Map{}
	dests := []struct {
		name string
		t    *timed
	}{
		{"storage account", &timed{appended: appended, dest: &storageaccount.Destination{Account: acct, ResourceID: rid,
			Chain: &digest.Chain{Name: "bench", Account: acct, Key: key, ResourceID: rid, Period: digestPeriod, StateFile: filepath.Join(dir, "digest")}}}},
		{"event hub (kfake)", &timed{appended: appended, dest: hub}},
		{"log analytics", &timed{appended: appended, dest: query}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i, dst := range dests {
		l := &delivery.Loop{ID: dst.name, Journal: j, Dest: dst.t, CursorFile: filepath.Join(dir, fmt.Sprintf("cursor-%d", i)), Log: quiet}
		wg.Add(1)
		go func() { defer wg.Done(); l.Run(ctx) }()
	}
	// Appenders at a steady rate: one tick per millisecond, rate/1000 records each.
	var sent atomic.Int64
	var awg sync.WaitGroup
	per := max(rate/1000, 1)
	tick := time.NewTicker(time.Millisecond)
	stop := time.Now().Add(d)
	for i := 0; time.Now().Before(stop); i++ {
		<-tick.C
		for k := 0; k < per; k++ {
			awg.Add(1)
			go func(n int) {
				defer awg.Done()
				r := record(n)
				// Timed from the start of Append (so the figure includes
				// the journal's fsync): storing the time after Append
				// returns could lose the race with a fast delivery.
				appended.Store(r.Properties.LogID, time.Now())
				if err := j.Append(context.Background(), r); err != nil {
					log.Fatal(err)
				}
				sent.Add(1)
			}(i*per + k)
		}
	}
	tick.Stop()
	awg.Wait()
	// Let the loops drain.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, dst := range dests {
			dst.t.mu.Lock()
			done = done && int64(len(dst.t.lat)) >= sent.Load()
			dst.t.mu.Unlock()
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	fmt.Printf("2. delivery latency, %d records offered at %d/s over %s (%.0f/s achieved), from Append's start to the destination's ack:\n",
		sent.Load(), rate, d, float64(sent.Load())/d.Seconds())
	fmt.Printf("   %-20s %10s %9s %9s %9s %9s\n", "destination", "delivered", "p50 ms", "p90 ms", "p99 ms", "max ms")
	for _, dst := range dests {
		l := dst.t.lat
		sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		fmt.Printf("   %-20s %10d %9.1f %9.1f %9.1f %9.1f\n", dst.name, len(l), ms(pct(l, 50)), ms(pct(l, 90)), ms(pct(l, 99)), ms(pct(l, 100)))
	}
	fmt.Println()
}

type noAudit struct{}

func (noAudit) Append(context.Context, *audit.Record) error { return nil }

func hook(dir string, rate int, d time.Duration) {
	j, err := audit.OpenJournal(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer j.Close()
	route := api.Route{Pattern: "GET /api/2.0/bench/get", Category: "workspace", Action: "get", Public: true,
		Handler: func(context.Context, *api.Request) (any, error) { return map[string]string{"status": "ok"}, nil }}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	muxes := map[string]*api.Mux{
		"no-op auditor":   api.NewMux(api.Config{Audit: noAudit{}, Logger: quiet, ResourceID: "/R"}),
		"journal auditor": api.NewMux(api.Config{Audit: j, Logger: quiet, ResourceID: "/R"}),
	}
	for _, m := range muxes {
		m.Handle(route)
	}
	fmt.Printf("3. audit hook overhead: %d API calls/s offered (open loop), the API middleware served in-process (no network):\n", rate)
	fmt.Printf("   %-16s %10s %9s %9s %9s\n", "auditor", "calls/s", "p50 ms", "p90 ms", "p99 ms")
	res := map[string][]time.Duration{}
	// Alternate the two in short rounds so both see the same machine load.
	round := d / 10
	for i := 0; i < 10; i++ {
		for _, name := range []string{"no-op auditor", "journal auditor"} {
			res[name] = append(res[name], drive(muxes[name], rate, round)...)
		}
	}
	for _, name := range []string{"no-op auditor", "journal auditor"} {
		l := res[name]
		sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		fmt.Printf("   %-16s %10.0f %9.3f %9.3f %9.3f\n", name, float64(len(l))/d.Seconds(), ms(pct(l, 50)), ms(pct(l, 90)), ms(pct(l, 99)))
	}
	fmt.Printf("   overhead at p99: %.3f ms, at p50: %.3f ms\n", ms(pct(res["journal auditor"], 99)-pct(res["no-op auditor"], 99)),
		ms(pct(res["journal auditor"], 50)-pct(res["no-op auditor"], 50)))
}

// drive offers rate calls per second (spread over each millisecond, each
// call in its own goroutine as the HTTP server would run it) for d.
func drive(m *api.Mux, rate int, d time.Duration) []time.Duration {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	per := max(rate/1000, 1)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	stop := time.Now().Add(d)
	for time.Now().Before(stop) {
		<-tick.C
		for k := 0; k < per; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := httptest.NewRequest(http.MethodGet, "/api/2.0/bench/get", nil)
				rec := httptest.NewRecorder()
				t := time.Now()
				m.ServeHTTP(rec, req)
				el := time.Since(t)
				if rec.Code != 200 {
					log.Fatalf("bench call: %d %s", rec.Code, rec.Body)
				}
				mu.Lock()
				all = append(all, el)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return all
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
