// Package compute is the control plane's side of clusters and instance
// pools: the Clusters and Instance Pools APIs, the cluster model and its
// event log, and the reconciler that drives each cluster's desired state to
// instances (through an instance provider) and to Spark (through each
// instance's agent, over the gateway).
//
// All state lives in the metadata store: the reconciler is a loop of small
// re-entrant steps (plan from the store and the agents' latest reports,
// write the plan in one transaction, then act), so a control plane that
// restarts picks up every cluster where it was. The cluster state machine
// is a pure function (state.go), pool assignment too (assign.go).
package compute

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/agent/wire"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/gateway"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/usage"
)

// Auditor writes audit records of asynchronous outcomes (createResult...).
type Auditor interface {
	Append(ctx context.Context, rec *audit.Record) error
}

// Issuer issues instance certificates (the region's CA).
type Issuer interface {
	IssueClient(cn string, ttl time.Duration) (pki.Issued, error)
}

// Sealer wraps and unwraps cluster secrets (a keyring KEK).
type Sealer interface {
	Wrap(ctx context.Context, dek []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapped []byte) ([]byte, error)
}

// Script is a global init script.
type Script struct {
	Name string
	Body []byte
}

// GlobalScripts lists the workspace's enabled global init scripts in run
// order.
type GlobalScripts interface {
	Enabled(ctx context.Context) ([]Script, error)
}

// FileReader reads a cluster-scoped init script from its destination
// ("workspace" or "dbfs") with the rights of the cluster's creator.
type FileReader interface {
	ReadFile(ctx context.Context, p principal.Principal, kind, path string) ([]byte, error)
}

// Principals resolves a user name to its principal (the principal a task
// runs as, for its relayed API calls).
type Principals interface {
	PrincipalByName(ctx context.Context, name string) (principal.Principal, error)
}

// Service is the compute service of a region.
type Service struct {
	Store      store.Store
	Perms      *permissions.Service
	Log        *slog.Logger
	Audit      Auditor
	ResourceID string
	// OrgID is the workspace id (in Spark UI proxy URLs).
	OrgID int64

	Provider provider.Provider
	Gateway  *gateway.Gateway
	CA       Issuer
	CAPEM    []byte
	// ControlURL is the gateway URL agents dial; set when the server
	// listens.
	ControlURL string
	// Secrets seals clusters' RPC secrets.
	Secrets Sealer

	GlobalScripts GlobalScripts
	Files         FileReader
	Principals    Principals

	Catalog Catalog
	// Rates price usage (the usage API, clusters/get); nil: the default
	// rates for the catalog's node types (DefaultRates).
	Rates *usage.Rates
	// ElasticDisk sizes the scratch volumes of enable_elastic_disk
	// clusters' nodes (zero fields: the agent's defaults).
	ElasticDisk wire.ElasticDisk
	// IntraClusterEncryption is the workspace setting that turns on Spark
	// RPC authentication and AES-GCM encryption for every cluster.
	IntraClusterEncryption bool
	// LogDir keeps the logs agents stream (driver logs, init scripts,
	// task output).
	LogDir string
	// LogSink receives clusters' delivered logs (cluster_log_conf, the
	// region's DBFS); LogDeliveryEvery is how often (10 s by default).
	LogSink          LogSink
	LogDeliveryEvery time.Duration

	// Now is the clock; Tick how often the reconciler runs.
	Now  func() time.Time
	Tick time.Duration
	// AutoscaleTick is how often autoscaling clusters are decided on
	// (default 1 s).
	AutoscaleTick time.Duration
	// LostAfter marks a silent instance lost; BootTimeout an instance that
	// never reports.
	LostAfter   time.Duration
	BootTimeout time.Duration

	// OnNodeMetrics, when set, receives the figures of every report that
	// carries some (the node metrics service), with what the instance
	// serves.
	OnNodeMetrics func(in Instance, m wire.Metrics)

	obs       *observations
	grants    scratchGrants // scratch sizes providers granted (disk.go)
	wake      chan struct{}
	started   time.Time
	launching sync.Map // instance id -> struct{}: a provider call in flight
	asgCache  sync.Map // instance id -> cachedAssignment
	goneSet   sync.Map // instance id -> struct{}: the provider says its processes are gone
	wg        sync.WaitGroup
}

// Init registers the cluster and pool permission types and prepares the
// service.
func (s *Service) Init() {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Tick == 0 {
		s.Tick = 250 * time.Millisecond
	}
	if s.LostAfter == 0 {
		s.LostAfter = 7 * time.Second
	}
	if s.BootTimeout == 0 {
		s.BootTimeout = 60 * time.Second
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	if len(s.Catalog.NodeTypes) == 0 {
		s.Catalog.NodeTypes = DefaultNodeTypes
	}
	if len(s.Catalog.SparkVersions) == 0 {
		s.Catalog.SparkVersions = SparkVersions("4.1.4")
	}
	s.obs = newObservations()
	s.wake = make(chan struct{}, 1)
	s.started = s.Now()
	s.Perms.Register(permissions.ObjectType{
		Name: "clusters", Wire: "cluster", Levels: permissions.ClusterLevels,
		Category: "clusters", Action: "changeClusterAcl",
		Resolve: func(tx store.Tx, id string) (permissions.Object, error) {
			c, err := getCluster(tx, id)
			if err != nil {
				return permissions.Object{}, err
			}
			return permissions.Object{Ref: permissions.Ref{Type: "clusters", ID: id}, Display: clusterDisplay(c)}, nil
		},
	})
	s.Perms.Register(permissions.ObjectType{
		Name: "instance-pools", Wire: "instance-pool", Levels: permissions.PoolLevels,
		Category: "instancePools", Action: "changeInstancePoolAcl",
		Resolve: func(tx store.Tx, id string) (permissions.Object, error) {
			p, err := store.Get[Pool](tx, kindPool, id)
			if err != nil || p.State == PoolDeleted {
				return permissions.Object{}, store.ErrNotFound
			}
			return permissions.Object{Ref: permissions.Ref{Type: "instance-pools", ID: id}, Display: fmt.Sprintf("instance pool %s (%s)", p.Name, p.ID)}, nil
		},
	})
}

func clusterDisplay(c Cluster) string {
	if c.Spec.ClusterName != "" {
		return fmt.Sprintf("cluster %s (%s)", c.Spec.ClusterName, c.ID)
	}
	return "cluster " + c.ID
}

// getCluster reads a cluster; a permanently deleted one does not exist.
func getCluster(tx store.Tx, id string) (Cluster, error) {
	c, err := store.Get[Cluster](tx, kindCluster, id)
	if err != nil {
		return c, err
	}
	if c.PermanentDelete {
		return c, store.ErrNotFound
	}
	return c, nil
}

// nudge asks the reconciler to run now.
func (s *Service) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) now() int64 { return s.Now().UnixMilli() }

// observations are the agents' latest reports, in memory only: after a
// control-plane restart every instance gets a grace period to report
// again before it counts as lost.
type observations struct {
	mu sync.Mutex
	m  map[string]*observed
}

type observed struct {
	seen    time.Time
	status  wire.NodeStatus
	spark   *wire.SparkSnapshot
	metrics *wire.Metrics
	tasks   map[string]wire.TaskStatus
}

func newObservations() *observations { return &observations{m: map[string]*observed{}} }

func (o *observations) get(id string) (observed, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob, ok := o.m[id]
	if !ok {
		return observed{}, false
	}
	return *ob, true
}

func (o *observations) forget(id string) {
	o.mu.Lock()
	delete(o.m, id)
	o.mu.Unlock()
}

// newID returns Databricks-style ids: 0123-456789-abcdefgh.
func newID(now time.Time, infix string) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [8]byte
	rand.Read(b[:])
	suffix := make([]byte, 8)
	for i := range b {
		suffix[i] = letters[int(b[i])%len(letters)]
	}
	u := now.UTC()
	return fmt.Sprintf("%02d%02d-%02d%02d%02d-%s%s", u.Month(), u.Day(), u.Hour(), u.Minute(), u.Second(), infix, suffix)
}

func newInstanceID() string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("i-%x", b[:])
}

func randomInt63() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:]) >> 1)
}

// Errors the API layer maps.
var errClusterGone = errors.New("cluster does not exist")

func clusterNotFound(id string) error {
	if strings.TrimSpace(id) == "" {
		return missing("cluster_id")
	}
	return notExist("Cluster %s does not exist", id)
}
