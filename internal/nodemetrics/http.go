package nodemetrics

import (
	"context"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/principal"
)

// Paths of the node metrics API.
const (
	PathPrometheus = "/api/2.0/tandem/metrics/prometheus"
	PathHTTPSD     = "/api/2.0/tandem/metrics/http-sd"
	PathHistory    = "/api/2.0/tandem/metrics/history"
)

// Routes mounts the exposition, the service-discovery document and the
// history. The first two are scraped every few seconds: like /metrics they
// are not audited and need an admin's token (they describe every cluster).
// The history is audited and open to whoever may attach to the cluster.
func (s *Service) Routes() []api.Route {
	return []api.Route{
		{Pattern: "GET " + PathPrometheus, NoAudit: true, Handler: s.servePrometheus},
		{Pattern: "GET " + PathHTTPSD, NoAudit: true, Handler: s.serveHTTPSD},
		{Pattern: "GET " + PathHistory, Category: "clusters", Action: "metricsHistory", Handler: s.serveHistory, NoResult: true},
	}
}

func requireAdmin(ctx context.Context, what string) error {
	if p := principal.MustFrom(ctx); !p.Admin {
		return api.Denied("Only workspace admins can read %s; scrape it with an admin service principal's token.", what)
	}
	return nil
}

// servePrometheus writes the figures of one node (instance_id), of one
// cluster's nodes (cluster_id), or of every node that reported recently.
func (s *Service) servePrometheus(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx, "node metrics"); err != nil {
		return nil, err
	}
	var q struct {
		InstanceID string `json:"instance_id"`
		ClusterID  string `json:"cluster_id"`
	}
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	nodes := s.fresh(q.ClusterID, q.InstanceID)
	if q.InstanceID != "" && len(nodes) == 0 {
		return nil, api.NotFound("Instance %s has sent no metrics in the last %s.", q.InstanceID, s.stale())
	}
	b, err := exposition(nodes)
	if err != nil {
		return nil, err
	}
	return &api.Raw{ContentType: string(TextFormat), Body: b}, nil
}

// TargetGroup is one entry of Prometheus' HTTP service discovery.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// serveHTTPSD lists every node that reported recently as a scrape target:
// the control plane's own address (as the caller reached it), the
// exposition's path, and the node's instance id as a URL parameter.
// The node's cluster, role and node type come as __meta_tandem_* labels
// for relabelling; "instance" is the instance id.
func (s *Service) serveHTTPSD(ctx context.Context, req *api.Request) (any, error) {
	if err := requireAdmin(ctx, "the node list"); err != nil {
		return nil, err
	}
	var q struct {
		ClusterID string `json:"cluster_id"`
	}
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	scheme := "https"
	if req.HTTP.TLS == nil {
		scheme = "http"
	}
	out := []TargetGroup{}
	for _, n := range s.fresh(q.ClusterID, "") {
		out = append(out, TargetGroup{Targets: []string{req.HTTP.Host}, Labels: map[string]string{
			"__scheme__":                scheme,
			"__metrics_path__":          PathPrometheus,
			"__param_instance_id":       n.node.InstanceID,
			"instance":                  n.node.InstanceID,
			"__meta_tandem_instance_id": n.node.InstanceID,
			"__meta_tandem_cluster_id":  n.node.ClusterID,
			"__meta_tandem_role":        n.node.role(),
			"__meta_tandem_node_type":   n.node.NodeType,
		}})
	}
	return out, nil
}

// HistoryResponse is the history API's answer.
type HistoryResponse struct {
	Metric    string   `json:"metric"`
	StartTime int64    `json:"start_time"`
	EndTime   int64    `json:"end_time"`
	Series    []Series `json:"series"`
}

// serveHistory returns one metric's recent points per node, for charts.
func (s *Service) serveHistory(ctx context.Context, req *api.Request) (any, error) {
	var q struct {
		ClusterID  string `json:"cluster_id"`
		InstanceID string `json:"instance_id"`
		Metric     string `json:"metric"`
		StartTime  int64  `json:"start_time"`
		EndTime    int64  `json:"end_time"`
	}
	if err := req.Decode(&q); err != nil {
		return nil, err
	}
	if q.Metric == "" {
		return nil, api.MissingField("metric")
	}
	metric := q.Metric
	if !strings.HasPrefix(metric, Prefix) {
		metric = Prefix + metric
	}
	if _, ok := historyIndex[metric]; !ok {
		return nil, api.InvalidParam("Unknown metric %q; the history has %s.", q.Metric, strings.Join(MetricNames(), ", "))
	}
	now := s.now().UnixMilli()
	if q.EndTime == 0 {
		q.EndTime = now
	}
	if q.StartTime == 0 {
		q.StartTime = q.EndTime - s.retention().Milliseconds()
	}
	if q.StartTime < 0 || q.EndTime < q.StartTime {
		return nil, api.InvalidParam("start_time (%d) must not be after end_time (%d), both in milliseconds since the epoch.", q.StartTime, q.EndTime)
	}
	p := principal.MustFrom(ctx)
	if !p.Admin {
		if q.ClusterID == "" {
			return nil, api.Denied("Only workspace admins can read the history of every node; pass cluster_id to read one cluster's.")
		}
		if s.Access == nil {
			return nil, api.Denied("Only workspace admins can read node metrics here.")
		}
		if err := s.Access.CheckClusterMetrics(ctx, p, q.ClusterID); err != nil {
			return nil, err
		}
	}
	series := s.history(metric, q.ClusterID, q.InstanceID, q.StartTime, q.EndTime)
	if series == nil {
		series = []Series{}
	}
	return HistoryResponse{Metric: metric, StartTime: q.StartTime, EndTime: q.EndTime, Series: series}, nil
}
