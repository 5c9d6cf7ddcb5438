// Package metrics is a region's Prometheus registry and its /metrics
// endpoint. Each server has its own registry (never the global one), so
// several regions in one test process do not collide; domain packages
// register their collectors into it when they are built. The exposition is
// Prometheus text format, served behind an admin token: a Prometheus
// server scrapes it with `authorization: {credentials_file: ...}` holding
// the token of a service principal in the admins group.
package metrics

import (
	"bytes"
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
)

// Namespace prefixes every Tandem metric name.
const Namespace = "tandem"

// Registry is a region's metrics registry.
type Registry struct {
	*prometheus.Registry
}

// New returns a registry holding the Go runtime and process collectors.
func New() *Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{Registry: r}
}

// Routes mounts GET /metrics. It is not audited (a scrape every few
// seconds would flood the audit log) and needs an admin's token: the
// figures describe the whole workspace's activity.
func (r *Registry) Routes() []api.Route {
	return []api.Route{{Pattern: "GET /metrics", NoAudit: true, Handler: r.serve}}
}

func (r *Registry) serve(ctx context.Context, req *api.Request) (any, error) {
	if p := principal.MustFrom(ctx); !p.Admin {
		return nil, api.Denied("Only workspace admins can read /metrics; scrape it with an admin service principal's token.")
	}
	families, err := r.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	var buf bytes.Buffer
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	enc := expfmt.NewEncoder(&buf, format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, fmt.Errorf("encode metrics: %w", err)
		}
	}
	return &api.Raw{ContentType: string(format), Body: buf.Bytes()}, nil
}
