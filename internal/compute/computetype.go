package compute

import (
	"context"
	"sort"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/store"
)

// Compute types (SC5): what a cluster's usage is charged as.
const (
	ComputeAllPurpose = "ALL_PURPOSE"
	ComputeJobs       = "JOBS"
	ComputeJobsLight  = "JOBS_LIGHT"
)

// lightPrefix marks a Jobs Light runtime key, as Databricks spells them
// ("apache-spark-2.4.x-scala2.11"): plain Apache Spark without the
// platform's extras, for job clusters only, charged at the Jobs Light rate.
const lightPrefix = "apache-spark-"

// LightRuntime reports a Jobs Light runtime key.
func LightRuntime(sparkVersion string) bool { return strings.HasPrefix(sparkVersion, lightPrefix) }

// ComputeType is the compute type of a cluster made by source (UI, API,
// JOB) with a runtime: a job's cluster is Jobs Compute, or Jobs Light on
// a light runtime; any other is All-Purpose.
func ComputeType(source, sparkVersion string) string {
	switch {
	case source != SourceJob:
		return ComputeAllPurpose
	case LightRuntime(sparkVersion):
		return ComputeJobsLight
	default:
		return ComputeJobs
	}
}

// checkRuntimeSource refuses a Jobs Light runtime for an all-purpose
// cluster, as Databricks does: light runtimes are for job clusters.
func checkRuntimeSource(source, sparkVersion string) error {
	if source != SourceJob && LightRuntime(sparkVersion) {
		return api.InvalidParam("Runtime %s is a Jobs Light runtime: it runs only job clusters (new_cluster or job_clusters of a job). Use a runtime from clusters/spark-versions whose key does not start with %s.", sparkVersion, lightPrefix)
	}
	return nil
}

// ClusterUsage returns the usage records of a cluster's instances, oldest
// first (cost accounting and tests read them).
func (s *Service) ClusterUsage(ctx context.Context, clusterID string) ([]Usage, error) {
	var out []Usage
	err := s.Store.View(ctx, func(tx store.Tx) error {
		return store.ScanPrefix(tx, kindUsage, "", func(_ string, u Usage) error {
			if u.ClusterID == clusterID {
				out = append(out, u)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].StartMillis < out[j].StartMillis })
	return out, err
}
