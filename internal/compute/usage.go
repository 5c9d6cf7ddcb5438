package compute

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/usage"
)

// dbuPerCore is the DBUs an hour of one core costs in the default rates:
// usage.DefaultRates gives a 4-core Standard_DS3_v2 0.75 DBU/h, so a local
// node type gets 0.1875 per declared core (tandem.small 0.1875,
// tandem.medium 0.375, tandem.large 0.75).
const dbuPerCore = 0.75 / 4

// DefaultRates are usage.DefaultRates with a rate for every node type of
// the catalog that has none, in proportion to its cores.
func DefaultRates(nodeTypes []NodeType) usage.Rates {
	r := usage.DefaultRates()
	for _, nt := range nodeTypes {
		if _, ok := r.DBUPerHour[nt.NodeTypeID]; !ok {
			r.DBUPerHour[nt.NodeTypeID] = nt.NumCores * dbuPerCore
		}
	}
	return r
}

func (s *Service) rates() usage.Rates {
	if s.Rates != nil {
		return *s.Rates
	}
	return DefaultRates(s.Catalog.NodeTypes)
}

// computeTypeOf is ComputeType as the usage package names it.
func computeTypeOf(source, sparkVersion string) usage.ComputeType {
	return usage.ComputeType(ComputeType(source, sparkVersion))
}

// runIDOfJobKey reads the run id from a job cluster's creation key
// ("run-<run id>/<cluster key>", as the jobs executor makes it); 0 if it
// has none.
func runIDOfJobKey(key string) int64 {
	rest, ok := strings.CutPrefix(key, "run-")
	if !ok {
		return 0
	}
	id, _, _ := strings.Cut(rest, "/")
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// intervalOf turns a usage record into an uptime interval, with the
// cluster's compute type and run; ok is false for an idle pool stretch
// (Databricks bills no DBUs for idle pool instances).
func intervalOf(u Usage, c *Cluster) (usage.Interval, bool) {
	if u.ClusterID == "" {
		return usage.Interval{}, false
	}
	iv := usage.Interval{InstanceID: u.InstanceID, ClusterID: u.ClusterID, RunID: u.RunID, NodeTypeID: u.NodeType,
		Driver: u.Role == wire.RoleDriver, Start: time.UnixMilli(u.StartMillis)}
	if u.EndMillis != 0 {
		iv.End = time.UnixMilli(u.EndMillis)
	}
	version := ""
	if c != nil {
		version = c.Spec.SparkVersion
		if iv.RunID == 0 {
			iv.RunID = c.RunID
		}
	}
	// The record says what it was charged as when it opened; records from
	// before compute types were stamped are derived from their cluster.
	iv.ComputeType = usage.ComputeType(u.ComputeType)
	if u.ComputeType == "" {
		iv.ComputeType = computeTypeOf(u.ClusterSource, version)
	}
	return iv, true
}

// ClusterUsage is a cluster's usage in clusters/get.
type ClusterUsage struct {
	NodeSeconds float64 `json:"node_seconds"`
	DBUs        float64 `json:"dbus"`
	Cost        float64 `json:"cost"`
	Currency    string  `json:"currency"`
	ComputeType string  `json:"compute_type"`
	// Unpriced is set when a node type of the cluster has no rate.
	Unpriced bool `json:"unpriced,omitempty"`
}

// clusterUsage is c's usage from its creation until now.
func (s *Service) clusterUsage(tx store.Tx, c Cluster) (*ClusterUsage, error) {
	var ivs []usage.Interval
	err := store.ScanPrefix(tx, kindUsage, "", func(_ string, u Usage) error {
		if u.ClusterID == c.ID {
			if iv, ok := intervalOf(u, &c); ok {
				ivs = append(ivs, iv)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := time.UnixMilli(s.now())
	from := time.UnixMilli(min(c.CreatedTime, now.UnixMilli()))
	rates, unpriced := usage.WithUnknownNodeTypes(ivs, s.rates())
	rep, err := usage.Compute(ivs, rates, from, now)
	if err != nil {
		return nil, err
	}
	rep = usage.MarkUnpriced(rep, unpriced)
	return &ClusterUsage{NodeSeconds: rep.Total.NodeSeconds, DBUs: rep.Total.DBUs, Cost: rep.Total.Cost, Currency: rep.Currency,
		ComputeType: string(computeTypeOf(c.Source, c.Spec.SparkVersion)), Unpriced: len(rep.UnpricedNodeTypes) > 0}, nil
}

// usageRequest is the query of the usage API.
type usageRequest struct {
	StartTime *int64 `json:"start_time"`
	EndTime   *int64 `json:"end_time"`
	ClusterID string `json:"cluster_id"`
	RunID     *int64 `json:"run_id"`
	GroupBy   string `json:"group_by"`
}

// usageQuery is a checked usage request.
type usageQuery struct {
	From, To  time.Time
	ClusterID string
	RunID     int64 // 0: any
	GroupBy   string
}

// parseUsageRequest checks a usage request against the time now: times in
// epoch milliseconds, the period from start_time (default: the beginning)
// to end_time (default: now).
func parseUsageRequest(r usageRequest, now time.Time) (usageQuery, error) {
	q := usageQuery{From: time.UnixMilli(0), To: now, ClusterID: strings.TrimSpace(r.ClusterID), GroupBy: r.GroupBy}
	if r.StartTime != nil {
		if *r.StartTime < 0 {
			return q, api.InvalidParam("start_time must be a time in epoch milliseconds, not negative: got %d.", *r.StartTime)
		}
		q.From = time.UnixMilli(*r.StartTime)
	}
	if r.EndTime != nil {
		if *r.EndTime < 0 {
			return q, api.InvalidParam("end_time must be a time in epoch milliseconds, not negative: got %d.", *r.EndTime)
		}
		q.To = time.UnixMilli(*r.EndTime)
	}
	if q.To.Before(q.From) {
		return q, api.InvalidParam("end_time (%d) must not be before start_time (%d).", q.To.UnixMilli(), q.From.UnixMilli())
	}
	if r.RunID != nil {
		if *r.RunID <= 0 {
			return q, api.InvalidParam("run_id must be a positive run id, got %d.", *r.RunID)
		}
		q.RunID = *r.RunID
	}
	switch r.GroupBy {
	case "", usage.ByCluster, usage.ByComputeType, usage.ByNodeType:
	default:
		return q, api.InvalidParam("group_by must be one of %s, %s or %s, got %q.", usage.ByCluster, usage.ByComputeType, usage.ByNodeType, r.GroupBy)
	}
	return q, nil
}

// usageHandler serves GET /api/2.0/tandem/usage: the DBUs and cost of the
// clusters the caller may attach to (admins: all, including deleted
// clusters'), per cluster, job run, compute type and node type.
func (s *Service) usageHandler(ctx context.Context, req *api.Request) (any, error) {
	var r usageRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	q, err := parseUsageRequest(r, time.UnixMilli(s.now()))
	if err != nil {
		return nil, err
	}
	p := principal.MustFrom(ctx)
	var ivs []usage.Interval
	err = s.Store.View(ctx, func(tx store.Tx) error {
		if q.ClusterID != "" {
			if _, err := s.lookupCluster(tx, p, q.ClusterID, permissions.CanAttachTo); err != nil {
				return err
			}
		}
		clusters := map[string]*Cluster{}
		if err := store.ScanPrefix(tx, kindCluster, "", func(_ string, c Cluster) error {
			clusters[c.ID] = &c
			return nil
		}); err != nil {
			return err
		}
		allowed := map[string]bool{}
		may := func(id string) (bool, error) {
			if p.Admin {
				return true, nil
			}
			if ok, seen := allowed[id]; seen {
				return ok, nil
			}
			if clusters[id] == nil {
				allowed[id] = false // deleted: admins only
				return false, nil
			}
			lvl, _, err := s.Perms.Effective(tx, p, "clusters", id)
			if errors.Is(err, store.ErrNotFound) {
				err = nil
			}
			t, _ := s.Perms.Type("clusters")
			ok := err == nil && t != nil && permissions.Covers(t.Levels, lvl, permissions.CanAttachTo)
			allowed[id] = ok
			return ok, err
		}
		return store.ScanPrefix(tx, kindUsage, "", func(_ string, u Usage) error {
			if u.ClusterID == "" || q.ClusterID != "" && u.ClusterID != q.ClusterID {
				return nil
			}
			iv, ok := intervalOf(u, clusters[u.ClusterID])
			if !ok || q.RunID != 0 && iv.RunID != q.RunID {
				return nil
			}
			if ok, err := may(u.ClusterID); err != nil || !ok {
				return err
			}
			ivs = append(ivs, iv)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return usageReport(ivs, s.rates(), q)
}

// usageReport prices intervals for a query: node types without a rate are
// counted and flagged, not refused.
func usageReport(ivs []usage.Interval, rates usage.Rates, q usageQuery) (usage.Report, error) {
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].Start.Before(ivs[j].Start) })
	rates, unpriced := usage.WithUnknownNodeTypes(ivs, rates)
	rep, err := usage.Compute(ivs, rates, q.From, q.To)
	if err != nil {
		return usage.Report{}, err
	}
	rep = usage.MarkUnpriced(rep, unpriced)
	rep, err = usage.Group(rep, q.GroupBy)
	if err != nil {
		return usage.Report{}, api.InvalidParam("%v", err)
	}
	return rep, nil
}
