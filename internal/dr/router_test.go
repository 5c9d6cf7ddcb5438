package dr_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go"
	"github.com/databricks/databricks-sdk-go/service/workspace"

	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/router"
	"github.com/tandemdata/tandem/internal/server/servertest"
)

// TestClientsKeepTheWorkspaceURLThroughAFailover writes through the router
// with the Databricks Go SDK while a planned failover and a failback run:
// every write succeeds (refused calls are sent again to the new leader,
// 503s are retried by the SDK), and every one is in both regions after.
func TestClientsKeepTheWorkspaceURLThroughAFailover(t *testing.T) {
	p := servertest.StartPair(t)
	rt, err := router.New(router.Config{Check: 50 * time.Millisecond, Regions: []router.Upstream{
		{Name: "primary", URL: p.Primary.URL, CAFile: p.Primary.CAFile},
		{Name: "secondary", URL: p.Secondary.URL, CAFile: p.Secondary.CAFile}}})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := router.Listen(rt, t.TempDir(), "127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs.Serve()
	defer rs.Close()
	pool, _ := pki.LoadPool(rs.CAFile)
	w, err := databricks.NewWorkspaceClient(&databricks.Config{Host: rs.URL(), Token: p.Primary.AdminToken,
		HTTPTransport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, RetryTimeoutSeconds: 60, RateLimitPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Workspace.MkdirsByPath(ctx, "/Shared/stream"); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters() // a failure before the writers are stopped does not leave them running
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := w.Workspace.Import(ctx, workspace.Import{Path: fmt.Sprintf("/Shared/stream/w%d-%d", g, i), Language: workspace.LanguagePython,
					Content: "cHJpbnQoMSk=", Format: workspace.ImportFormatSource})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	o := orchestrator(t, pairRegions(p), nil)
	o.Router = dr.RouterAPI(mustRouterClient(t, rs.URL(), rs.CAFile))
	rep, err := o.Run(ctx, dr.Plan{Kind: dr.PlannedFailover, From: "primary", To: "secondary"})
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	back, err := o.Run(ctx, dr.Plan{Kind: dr.Failback, From: "secondary", To: "primary"})
	if err != nil {
		t.Fatalf("failback: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	stopWriters()
	if failed.Load() != 0 {
		t.Errorf("%d of %d writes through the router failed; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if st := rt.Status(); st.ActiveRegion != "primary" || st.Switches != 2 || st.Epoch != 3 {
		t.Errorf("router: %+v", st)
	}
	t.Logf("%d writes through the router; writes unavailable %.3fs (failover) and %.3fs (failback)", ok.Load(), rep.RTOSeconds, back.RTOSeconds)
	// Every acknowledged write is in both regions.
	waitCaughtUp(t, p)
	for _, srv := range []*servertest.Server{p.Primary, p.Secondary} {
		objs, err := srv.SDK(srv.AdminToken).Workspace.ListAll(ctx, workspace.ListWorkspaceRequest{Path: "/Shared/stream"})
		if err != nil || int64(len(objs)) != ok.Load() {
			t.Errorf("%s has %d notebooks, %d writes were acknowledged (%v)", srv.URL, len(objs), ok.Load(), err)
		}
	}
}

func mustRouterClient(t *testing.T, url, ca string) *dr.HTTPRouter {
	t.Helper()
	r, err := dr.NewHTTPRouter(url, ca)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
