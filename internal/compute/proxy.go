package compute

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/gateway"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

func randRead(b []byte) (int, error) { return rand.Read(b) }

// driverLogs serves a cluster's driver logs: stdout, stderr and log4j as
// the driver's agent streamed them to the control plane. Like DBFS read,
// it returns base64 data from an offset (a negative offset counts from the
// end, so -65536 is the last 64 KiB).
func (s *Service) driverLogs(ctx context.Context, req *api.Request) (any, error) {
	var r struct {
		ClusterID string `json:"cluster_id"`
		Log       string `json:"log"`
		Offset    int64  `json:"offset"`
		Length    int    `json:"length"`
	}
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	streams := map[string]string{"stdout": wire.StreamStdout, "stderr": wire.StreamStderr, "log4j": wire.StreamLog4j, "": wire.StreamStdout}
	stream, ok := streams[r.Log]
	if !ok {
		return nil, api.InvalidParam("log must be stdout, stderr or log4j, got %q.", r.Log)
	}
	if r.Length <= 0 || r.Length > 1<<20 {
		r.Length = 1 << 20
	}
	p := principal.MustFrom(ctx)
	var driver string
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := s.lookupCluster(tx, p, r.ClusterID, permissions.CanAttachTo); err != nil {
			return err
		}
		d, err := driverOf(tx, r.ClusterID)
		driver = d.ID
		return err
	})
	if err != nil {
		return nil, err
	}
	inst := s.driverLogInstance(r.ClusterID, driver)
	if inst == "" {
		return map[string]any{"bytes_read": 0, "data": "", "size": 0}, nil
	}
	data, size, err := s.readLog(r.ClusterID, inst, stream, r.Offset, r.Length)
	if err != nil {
		return nil, err
	}
	return map[string]any{"bytes_read": len(data), "data": base64.StdEncoding.EncodeToString(data), "size": size, "instance_id": inst}, nil
}

// hopHeaders are not forwarded through the proxy.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Authorization", "Cookie", "Set-Cookie"}

// sparkUI serves a running cluster's Spark UI through the control plane:
// behind the API's authentication, to callers who may attach to the
// cluster, over the driver agent's own channel (nothing on the driver
// listens for the control plane). The master's UI serves the workers' and
// applications' UIs too (Spark's reverse proxy), under the same path.
func (s *Service) sparkUI(ctx context.Context, req *api.Request) (any, error) {
	hr := req.HTTP
	id := hr.PathValue("cluster_id")
	if org := hr.PathValue("org"); org != fmt.Sprint(s.OrgID) && org != "0" {
		return nil, api.NotFound("No workspace %s here.", org)
	}
	p := principal.MustFrom(ctx)
	var driver Instance
	err := s.Store.View(ctx, func(tx store.Tx) error {
		c, err := s.lookupCluster(tx, p, id, permissions.CanAttachTo)
		if err != nil {
			return err
		}
		if c.State != Running && c.State != Resizing {
			return api.Errorf(api.InvalidState, "Cluster %s is %s: the Spark UI is served while it runs.", id, titleState(c.State))
		}
		driver, err = driverOf(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if driver.ID == "" || s.Gateway == nil {
		return nil, api.Errorf(api.TemporarilyUnavailable, "The cluster's driver is not reachable.")
	}
	// Spark links its pages under the proxy's path (reverseProxyUrl) and
	// serves them from its root: the prefix is stripped, as a reverse
	// proxy in front of Spark does.
	local := strings.TrimPrefix(hr.URL.Path, fmt.Sprintf("/driver-proxy/o/%s/%s/sparkui", hr.PathValue("org"), id))
	if local == "" {
		local = "/"
	}
	if hr.URL.RawQuery != "" {
		local += "?" + hr.URL.RawQuery
	}
	header := http.Header{}
	for k, vs := range hr.Header {
		header[k] = vs
	}
	for _, h := range hopHeaders {
		header.Del(h)
	}
	var body []byte
	if hr.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(hr.Body, 8<<20))
	}
	if b := req.Body(); len(b) > 0 {
		body = b
	}
	status, rh, rb, err := s.Gateway.Proxy(ctx, driver.ID, wire.ProxyRequest{Target: wire.TargetSparkUI, Method: hr.Method, Path: local, Header: header, Body: body})
	if errors.Is(err, gateway.ErrAgentUnavailable) {
		return nil, api.Errorf(api.TemporarilyUnavailable, "The cluster's driver did not answer: %v", err)
	}
	if err != nil {
		return nil, err
	}
	for _, h := range hopHeaders {
		rh.Del(h)
	}
	ct := rh.Get("Content-Type")
	rh.Del("Content-Type")
	rh.Del("Content-Length")
	return &api.Raw{Status: status, ContentType: ct, Body: rb, Header: rh}, nil
}
