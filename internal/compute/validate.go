package compute

import (
	"fmt"
	"strings"

	"github.com/tandemdata/tandem/internal/api"
)

// Catalog is what specs are checked against: the node types and runtimes
// the region offers.
type Catalog struct {
	NodeTypes     []NodeType
	SparkVersions []SparkVersion
	// MaxWorkers bounds a cluster's size (the region's capacity).
	MaxWorkers int
}

func (c Catalog) nodeType(id string) (NodeType, bool) {
	for _, nt := range c.NodeTypes {
		if nt.NodeTypeID == id {
			return nt, true
		}
	}
	return NodeType{}, false
}

func (c Catalog) sparkVersion(key string) bool {
	for _, v := range c.SparkVersions {
		if v.Key == key {
			return true
		}
	}
	return false
}

func (c Catalog) versionKeys() string {
	keys := make([]string, len(c.SparkVersions))
	for i, v := range c.SparkVersions {
		keys[i] = v.Key
	}
	return strings.Join(keys, ", ")
}

func (c Catalog) nodeTypeIDs() string {
	ids := make([]string, len(c.NodeTypes))
	for i, nt := range c.NodeTypes {
		ids[i] = nt.NodeTypeID
	}
	return strings.Join(ids, ", ")
}

// Spark configuration Tandem sets itself: a cluster may not set these.
var reservedConf = map[string]string{
	"spark.master":                   "the cluster's master is set by Tandem",
	"spark.authenticate.secret":      "the cluster's RPC secret is made by Tandem and never stored in a spec; set spark.authenticate to true instead",
	"spark.master.rest.enabled":      "the master's REST submission server stays off (it cannot authenticate with the cluster secret)",
	"spark.ui.reverseProxyUrl":       "the Spark UI is served through the control plane at a URL Tandem sets",
	"spark.ui.reverseProxy":          "the Spark UI is served through the control plane at a URL Tandem sets",
	"spark.authenticate.secret.file": "the cluster's RPC secret is made by Tandem",
}

// validateSpec checks a cluster spec for create and edit, with the pools
// it names (nil when it names none). It is pure.
func validateSpec(s ClusterSpec, cat Catalog, pool, driverPool *Pool) error {
	if s.SparkVersion == "" {
		return api.MissingField("spark_version")
	}
	if !cat.sparkVersion(s.SparkVersion) {
		return api.InvalidParam("Invalid spark version %s. Available versions: %s.", s.SparkVersion, cat.versionKeys())
	}
	if len(s.ClusterName) > 100 {
		return api.InvalidParam("cluster_name is longer than 100 characters.")
	}
	if s.InstancePoolID == "" && s.DriverInstancePoolID != "" {
		return api.InvalidParam("driver_instance_pool_id needs instance_pool_id: the workers must come from a pool too.")
	}
	switch {
	case s.InstancePoolID != "":
		if pool == nil {
			return api.InvalidParam("Instance pool %s does not exist.", s.InstancePoolID)
		}
		if s.NodeTypeID != "" && s.NodeTypeID != pool.NodeTypeID {
			return api.InvalidParam("node_type_id %s differs from the node type %s of instance pool %s; leave it out when using a pool.", s.NodeTypeID, pool.NodeTypeID, pool.ID)
		}
		if s.DriverInstancePoolID != "" {
			if driverPool == nil {
				return api.InvalidParam("Instance pool %s does not exist.", s.DriverInstancePoolID)
			}
			if s.DriverNodeTypeID != "" && s.DriverNodeTypeID != driverPool.NodeTypeID {
				return api.InvalidParam("driver_node_type_id %s differs from the node type %s of driver instance pool %s.", s.DriverNodeTypeID, driverPool.NodeTypeID, driverPool.ID)
			}
		} else if s.DriverNodeTypeID != "" && s.DriverNodeTypeID != pool.NodeTypeID {
			return api.InvalidParam("A cluster in a pool runs its driver on the pool's node type %s; set driver_instance_pool_id to use another.", pool.NodeTypeID)
		}
	case s.NodeTypeID == "":
		return api.InvalidParam("Missing required field: node_type_id (or instance_pool_id).")
	default:
		if _, ok := cat.nodeType(s.NodeTypeID); !ok {
			return api.InvalidParam("Node type %s is not supported. Supported node types: %s.", s.NodeTypeID, cat.nodeTypeIDs())
		}
		if s.DriverNodeTypeID != "" {
			if _, ok := cat.nodeType(s.DriverNodeTypeID); !ok {
				return api.InvalidParam("Driver node type %s is not supported. Supported node types: %s.", s.DriverNodeTypeID, cat.nodeTypeIDs())
			}
		}
	}
	maxWorkers := cat.MaxWorkers
	if maxWorkers <= 0 {
		maxWorkers = 100
	}
	if s.Autoscale != nil {
		if s.NumWorkers != 0 {
			return api.InvalidParam("Specify either num_workers or autoscale, not both.")
		}
		a := s.Autoscale
		if a.MinWorkers < 0 {
			return api.InvalidParam("autoscale.min_workers must be at least 0, got %d.", a.MinWorkers)
		}
		if a.MaxWorkers <= a.MinWorkers {
			return api.InvalidParam("autoscale.max_workers (%d) must be greater than autoscale.min_workers (%d).", a.MaxWorkers, a.MinWorkers)
		}
		if a.MaxWorkers > maxWorkers {
			return api.InvalidParam("autoscale.max_workers %d is more than this region's limit of %d workers.", a.MaxWorkers, maxWorkers)
		}
	} else {
		if s.NumWorkers < 0 {
			return api.InvalidParam("num_workers must be at least 0, got %d.", s.NumWorkers)
		}
		if s.NumWorkers > maxWorkers {
			return api.InvalidParam("num_workers %d is more than this region's limit of %d workers.", s.NumWorkers, maxWorkers)
		}
	}
	if pool != nil && pool.MaxCapacity > 0 {
		need := s.NumWorkers
		if s.Autoscale != nil {
			need = s.Autoscale.MaxWorkers
		}
		if driverPool == nil || driverPool.ID == pool.ID {
			need++
		}
		if need > pool.MaxCapacity {
			return api.InvalidParam("The cluster needs up to %d instances from instance pool %s, more than its max_capacity of %d.", need, pool.ID, pool.MaxCapacity)
		}
	}
	if m := s.AutoterminationMinutes; m != 0 && (m < 10 || m > 10000) {
		return api.InvalidParam("autotermination_minutes must be 0 (off) or between 10 and 10000, got %d.", m)
	}
	for _, k := range sortedKeys(s.SparkConf) {
		if why, ok := reservedConf[k]; ok {
			return api.InvalidParam("spark_conf may not set %s: %s.", k, why)
		}
	}
	if len(s.CustomTags) > 45 {
		return api.InvalidParam("A cluster can have at most 45 custom tags, got %d.", len(s.CustomTags))
	}
	for i, sc := range s.InitScripts {
		if err := validateInitScript(i, sc); err != nil {
			return err
		}
	}
	if _, err := logDestination(s.ClusterLogConf); err != nil {
		return err
	}
	return nil
}

func validateInitScript(i int, sc InitScriptInfo) error {
	n := 0
	for _, set := range []bool{sc.Workspace != nil, sc.Dbfs != nil, sc.Volumes != nil, sc.File != nil, len(sc.S3) > 0, len(sc.Gcs) > 0, len(sc.Abfss) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return api.InvalidParam("init_scripts[%d] must have exactly one destination (workspace, dbfs, volumes, file, s3, gcs or abfss).", i)
	}
	kind, dest := sc.kind()
	switch kind {
	case "workspace":
		if !strings.HasPrefix(dest, "/") {
			return api.InvalidParam("init_scripts[%d].workspace.destination must be an absolute workspace path, got %q.", i, dest)
		}
	case "dbfs":
		if !strings.HasPrefix(dest, "dbfs:/") && !strings.HasPrefix(dest, "/") {
			return api.InvalidParam("init_scripts[%d].dbfs.destination must be a DBFS path such as dbfs:/scripts/setup.sh, got %q.", i, dest)
		}
	case "file":
		if !strings.HasPrefix(dest, "/") {
			return api.InvalidParam("init_scripts[%d].file.destination must be an absolute path on the node, got %q.", i, dest)
		}
	default:
		return api.InvalidParam("init_scripts[%d]: %s destinations are not supported by this workspace; use workspace, dbfs or file.", i, kind)
	}
	return nil
}

// poolRequest is the body of instance-pools/create and edit.
type poolRequest struct {
	InstancePoolID             string            `json:"instance_pool_id"`
	InstancePoolName           string            `json:"instance_pool_name"`
	NodeTypeID                 string            `json:"node_type_id"`
	MinIdleInstances           int               `json:"min_idle_instances"`
	MaxCapacity                int               `json:"max_capacity"`
	IdleAutoterminationMinutes *int              `json:"idle_instance_autotermination_minutes"`
	PreloadedSparkVersions     []string          `json:"preloaded_spark_versions"`
	PreloadedDockerImages      []any             `json:"preloaded_docker_images"`
	CustomTags                 map[string]string `json:"custom_tags"`
	EnableElasticDisk          bool              `json:"enable_elastic_disk"`
	DiskSpec                   any               `json:"disk_spec"`
	AwsAttributes              any               `json:"aws_attributes"`
	AzureAttributes            any               `json:"azure_attributes"`
	GcpAttributes              any               `json:"gcp_attributes"`
	RemoteDiskThroughput       int               `json:"remote_disk_throughput"`
	TotalInitialRemoteDisk     int               `json:"total_initial_remote_disk_size"`
}

// defaultIdleMinutes is the idle timeout of a pool that sets none.
const defaultIdleMinutes = 60

// validatePool checks a pool request. It is pure.
func validatePool(r poolRequest, cat Catalog) error {
	name := strings.TrimSpace(r.InstancePoolName)
	if name == "" {
		return api.MissingField("instance_pool_name")
	}
	if len(r.InstancePoolName) > 100 {
		return api.InvalidParam("instance_pool_name is longer than 100 characters.")
	}
	if r.NodeTypeID == "" {
		return api.MissingField("node_type_id")
	}
	if _, ok := cat.nodeType(r.NodeTypeID); !ok {
		return api.InvalidParam("Node type %s is not supported. Supported node types: %s.", r.NodeTypeID, cat.nodeTypeIDs())
	}
	if r.MinIdleInstances < 0 {
		return api.InvalidParam("min_idle_instances must be at least 0, got %d.", r.MinIdleInstances)
	}
	if r.MaxCapacity < 0 {
		return api.InvalidParam("max_capacity must be at least 0, got %d.", r.MaxCapacity)
	}
	if r.MaxCapacity > 0 && r.MinIdleInstances > r.MaxCapacity {
		return api.InvalidParam("min_idle_instances (%d) cannot be more than max_capacity (%d).", r.MinIdleInstances, r.MaxCapacity)
	}
	if m := r.IdleAutoterminationMinutes; m != nil && (*m < 0 || *m > 10000) {
		return api.InvalidParam("idle_instance_autotermination_minutes must be between 0 and 10000, got %d.", *m)
	}
	if len(r.PreloadedSparkVersions) > 1 {
		return api.InvalidParam("A pool can preload at most one Spark version, got %d.", len(r.PreloadedSparkVersions))
	}
	for _, v := range r.PreloadedSparkVersions {
		if !cat.sparkVersion(v) {
			return api.InvalidParam("Invalid spark version %s in preloaded_spark_versions. Available versions: %s.", v, cat.versionKeys())
		}
	}
	if len(r.CustomTags) > 45 {
		return api.InvalidParam("A pool can have at most 45 custom tags, got %d.", len(r.CustomTags))
	}
	return nil
}

func fmtWorkers(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}
