// Package config is the configuration of a `tandem server`: defaults, a YAML
// (or JSON) file for everything, and the command-line flags that DESIGN.md
// makes public (--data-dir, --listen, --region, --store), which override
// the file.
package config

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the configuration of one region's server.
type Config struct {
	// DataDir holds everything the region keeps on local disk.
	DataDir string `json:"data_dir"`
	// Listen is the HOST:PORT of the API, UI and agent gateway.
	Listen string `json:"listen"`
	// Region names this region (primary, secondary, westeurope...).
	Region string `json:"region"`
	// Store is the metadata store: empty for SQLite in DataDir, or a
	// postgres:// URL.
	Store string `json:"store"`

	TLS       TLS       `json:"tls"`
	Workspace Workspace `json:"workspace"`
	Log       Log       `json:"log"`
	Audit     Audit     `json:"audit"`
	// DBFSVersionRetention is how long replaced and deleted DBFS files stay
	// restorable (a Go duration: "168h").
	DBFSVersionRetention string `json:"dbfs_version_retention"`
	// Storage configures the region's storage account.
	Storage Storage `json:"storage"`
	// AdminUser is the user name of the administrator created for
	// TANDEM_BOOTSTRAP_TOKEN.
	AdminUser string  `json:"admin_user"`
	Compute   Compute `json:"compute"`
	// DR pairs the region with a peer region for disaster recovery.
	DR DR `json:"dr"`
}

// Compute configures clusters and the instances they run on.
type Compute struct {
	// Provider runs instances: "local" (agent processes on this machine,
	// the default) or "kubernetes".
	Provider string `json:"provider"`
	// Venv is the Python virtualenv with pyspark that local instances
	// use (default ./.venv, or TANDEM_VENV).
	Venv string `json:"venv"`
	// AgentBinary is the tandem binary local instances run (default: this
	// executable, or TANDEM_BIN).
	AgentBinary string `json:"agent_binary"`
	// ControlURL is the URL agents dial (default: the server's URL).
	ControlURL string `json:"control_url"`
	// IntraClusterEncryption turns on Spark RPC authentication and AES-GCM
	// encryption between the nodes of every cluster (the workspace
	// setting; a cluster can also ask with spark.authenticate).
	IntraClusterEncryption bool `json:"intra_cluster_encryption"`
	// MaxWorkers bounds one cluster's size (default 100).
	MaxWorkers int `json:"max_workers"`
	// HeartbeatSeconds is how often agents report (default 2); an
	// instance silent for three heartbeats and a second is lost.
	HeartbeatSeconds float64 `json:"heartbeat_seconds"`
	// Kubernetes configures the Kubernetes provider.
	Kubernetes Kubernetes `json:"kubernetes"`
	// Usage overrides the rates cost accounting prices usage with.
	Usage UsageRates `json:"usage"`
	// ElasticDisk sizes the scratch volumes of enable_elastic_disk
	// clusters' nodes (local storage autoscaling).
	ElasticDisk ElasticDisk `json:"elastic_disk"`
}

// ElasticDisk sizes local storage autoscaling, in MiB; zero values take
// the defaults (256 MiB volumes, the first one too, at most 8, a volume
// attached when less than half a volume is free).
type ElasticDisk struct {
	FirstVolumeMB int `json:"first_volume_mb"`
	VolumeMB      int `json:"volume_mb"`
	MaxVolumes    int `json:"max_volumes"`
	FreeBelowMB   int `json:"free_below_mb"`
}

// UsageRates override the default rates of cost accounting (see
// docs/autoscaling.md, "Cost and the usage API"): entries given replace
// or add to the defaults, the others stay.
type UsageRates struct {
	// DBUPerHour is per node type.
	DBUPerHour map[string]float64 `json:"dbu_per_hour"`
	// PricePerDBU is per compute type (ALL_PURPOSE, JOBS, JOBS_LIGHT, SQL).
	PricePerDBU map[string]float64 `json:"price_per_dbu"`
	Currency    string             `json:"currency"`
}

// Kubernetes configures the Kubernetes instance provider.
type Kubernetes struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster.
	Kubeconfig string `json:"kubeconfig"`
	Context    string `json:"context"`
	Namespace  string `json:"namespace"`
	// Image is the instance image: tandem, Java 17 and pyspark.
	Image string `json:"image"`
	// Venv (or SparkHome) says where pyspark is in the image.
	Venv      string `json:"venv"`
	SparkHome string `json:"spark_home"`
	// ServiceAccount, ImagePullSecrets and NodeSelector shape the pods.
	ServiceAccount   string            `json:"service_account"`
	ImagePullSecrets []string          `json:"image_pull_secrets"`
	NodeSelector     map[string]string `json:"node_selector"`
	// ScratchSize ("2Gi") gives every pod a size-limited emptyDir for
	// enable_elastic_disk clusters; ScratchMedium "Memory" makes it a
	// tmpfs. Empty: no scratch volume.
	ScratchSize   string `json:"scratch_size"`
	ScratchMedium string `json:"scratch_medium"`
	// ScratchStorageClass makes the scratch volume a claim of this
	// StorageClass (which must allow volume expansion) that starts at
	// ScratchSize and grows while a job runs.
	ScratchStorageClass string `json:"scratch_storage_class"`
}

// DR pairs a region with its peer. The two regions trust each other
// explicitly: each is given the other's CA certificate (its
// DATA_DIR/tls/ca.pem) and nothing else.
type DR struct {
	// Primary is the primary region's URL, set on a secondary region: on
	// its first start the region copies the workspace from the primary and
	// then follows it. Later starts go by the region's own recorded role.
	Primary string `json:"primary"`
	// Peer is the peer region's URL on a primary (the secondary's URL).
	Peer string `json:"peer"`
	// PeerCAFile is the peer region's CA certificate.
	PeerCAFile string `json:"peer_ca_file"`
	// RPO is the recovery point objective, a duration ("60s"): a
	// replication lag above it raises an event and the alert metric.
	RPO string `json:"rpo"`
	// Router is the global endpoint's URL and RouterCAFile its CA: the
	// region checks the router's view of the active epoch too.
	Router       string `json:"router"`
	RouterCAFile string `json:"router_ca_file"`
}

// PeerURL is the peer region's URL, if the region has one.
func (d DR) PeerURL() string {
	if d.Primary != "" {
		return d.Primary
	}
	return d.Peer
}

// RPODuration is RPO parsed (60 s when unset).
func (d DR) RPODuration() time.Duration {
	v, err := time.ParseDuration(d.RPO)
	if err != nil || v <= 0 {
		return time.Minute
	}
	return v
}

// TLS configures the API's certificate.
type TLS struct {
	// CertFile and KeyFile replace the certificate issued by the local CA.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	// Hosts are extra DNS names and addresses for the issued certificate,
	// beyond localhost, 127.0.0.1 and the listen host.
	Hosts []string `json:"hosts"`
}

// Workspace names the workspace in audit records (resourceId).
type Workspace struct {
	Name           string `json:"name"`
	SubscriptionID string `json:"subscription_id"`
	ResourceGroup  string `json:"resource_group"`
}

// Storage configures the region's storage account. Redundancy, key and
// double encryption are the settings of a new account; afterwards they live
// in the metadata store and change through the storage admin API.
type Storage struct {
	// Redundancy of a new account: LRS (default), ZRS, GRS, GZRS, RA-GRS,
	// RA-GZRS.
	Redundancy string `json:"redundancy"`
	// InfrastructureEncryption turns double encryption on for a new
	// account (later changes go through the admin API).
	InfrastructureEncryption bool `json:"infrastructure_encryption"`
	// Zones are the three ZRS zone directories (default
	// DATA_DIR/storage/primary/zone-N); put each on its own disk.
	Zones []string `json:"zones"`
	// KeyCacheTTL is how long an unwrapped account key is trusted before
	// the KEK is asked again ("0s", the default: every call), a Go
	// duration. Revoking a key takes effect within it.
	KeyCacheTTL string `json:"key_cache_ttl"`
	// ScrubInterval is the time between full scrubber passes ("24h").
	ScrubInterval string `json:"scrub_interval"`
	// Azure, if set, keeps every copy (and zone, and the secondary's
	// copies) as a container of an Azure Blob Storage account instead of a
	// directory.
	Azure *StorageAzure `json:"azure,omitempty"`
}

// StorageAzure names an Azure Blob Storage account (or Azurite) for the
// storage account's copies: containers <container_prefix>-<site>-<copy>.
type StorageAzure struct {
	ServiceURL      string `json:"service_url"`
	Account         string `json:"account"`
	Key             string `json:"key"`
	ContainerPrefix string `json:"container_prefix"`
}

// Log configures the server's own log.
type Log struct {
	Level  string `json:"level"`  // debug, info, warn, error
	Format string `json:"format"` // text or json
}

// Audit configures the delivery of audit records.
type Audit struct {
	// DigestPeriod is how often a digest seals the files delivered to a
	// storage account (1h; shorter in tests).
	DigestPeriod Duration `json:"digest_period"`
	// JournalRetention keeps journal segments at least this long even
	// once every destination has delivered them (24h).
	JournalRetention Duration `json:"journal_retention"`
	// QueryRetention is how long the audit query store keeps records (8760h).
	QueryRetention Duration `json:"query_retention"`
}

// Duration is a time.Duration written as "90s", "1h" in configuration files.
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"90s\" or \"1h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		DataDir:              "tandem-data",
		Listen:               "127.0.0.1:8443",
		Region:               "primary",
		AdminUser:            "admin@tandem.local",
		DBFSVersionRetention: "168h",
		Workspace:            Workspace{Name: "tandem", SubscriptionID: "00000000-0000-0000-0000-000000000000", ResourceGroup: "tandem"},
		Log:                  Log{Level: "info", Format: "text"},
	}
}

// Load reads a configuration file over the defaults.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return cfg, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks the configuration and fills in derived defaults.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("data_dir is empty")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return err
	}
	c.DataDir = abs
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q is not HOST:PORT: %w", c.Listen, err)
	}
	if c.Region == "" || strings.ContainsAny(c.Region, "/ \t") {
		return fmt.Errorf("region %q must be a non-empty name without spaces or slashes", c.Region)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("tls.cert_file and tls.key_file go together")
	}
	if c.DBFSVersionRetention == "" {
		c.DBFSVersionRetention = "168h"
	}
	if d, err := time.ParseDuration(c.DBFSVersionRetention); err != nil || d < 0 {
		return fmt.Errorf("dbfs_version_retention %q is not a duration such as 168h", c.DBFSVersionRetention)
	}
	if c.Storage.Redundancy == "" {
		c.Storage.Redundancy = "LRS"
		if c.DR.PeerURL() != "" {
			// With a peer region, the account's geo-replication is what
			// carries its contents there (docs/dr.md).
			c.Storage.Redundancy = "GRS"
		}
	}
	switch strings.ToUpper(c.Storage.Redundancy) {
	case "LRS", "ZRS", "GRS", "GZRS", "RA-GRS", "RA-GZRS":
	default:
		return fmt.Errorf("storage.redundancy %q is not one of LRS, ZRS, GRS, GZRS, RA-GRS, RA-GZRS", c.Storage.Redundancy)
	}
	if az := c.Storage.Azure; az != nil && (az.ServiceURL == "" || az.Account == "" || az.Key == "") {
		return fmt.Errorf("storage.azure needs service_url, account and key")
	}
	if len(c.Storage.Zones) != 0 && len(c.Storage.Zones) != 3 {
		return fmt.Errorf("storage.zones lists %d directories; ZRS needs three", len(c.Storage.Zones))
	}
	for _, d := range []struct{ name, v, def string }{
		{"storage.key_cache_ttl", c.Storage.KeyCacheTTL, "0s"}, {"storage.scrub_interval", c.Storage.ScrubInterval, "24h"},
	} {
		v := d.v
		if v == "" {
			v = d.def
		}
		if dur, err := time.ParseDuration(v); err != nil || dur < 0 {
			return fmt.Errorf("%s %q is not a duration such as %s", d.name, d.v, d.def)
		}
	}
	if c.Workspace.Name == "" {
		c.Workspace.Name = "tandem"
	}
	switch c.Compute.Provider {
	case "":
		c.Compute.Provider = "local"
	case "local", "kubernetes":
	default:
		return fmt.Errorf("compute.provider %q must be local or kubernetes", c.Compute.Provider)
	}
	if c.Compute.Venv == "" {
		c.Compute.Venv = os.Getenv("TANDEM_VENV")
	}
	if c.Compute.Venv == "" {
		c.Compute.Venv = ".venv"
	}
	if abs, err := filepath.Abs(c.Compute.Venv); err == nil {
		c.Compute.Venv = abs
	}
	if c.Compute.Provider == "kubernetes" && c.Compute.Kubernetes.Image == "" {
		return fmt.Errorf("compute.kubernetes.image is required with the kubernetes provider")
	}
	if e := c.Compute.ElasticDisk; e.FirstVolumeMB < 0 || e.VolumeMB < 0 || e.MaxVolumes < 0 || e.FreeBelowMB < 0 {
		return fmt.Errorf("compute.elastic_disk sizes must not be negative")
	}
	if c.Compute.HeartbeatSeconds < 0 || c.Compute.MaxWorkers < 0 {
		return fmt.Errorf("compute.heartbeat_seconds and compute.max_workers must not be negative")
	}
	if c.DR.Primary != "" && c.DR.Peer != "" && c.DR.Primary != c.DR.Peer {
		return fmt.Errorf("dr.primary and dr.peer name different regions: a region has one peer")
	}
	for _, u := range []string{c.DR.PeerURL(), c.DR.Router} {
		if u != "" && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("%q must be an https:// URL", u)
		}
	}
	if c.DR.PeerURL() != "" && c.DR.PeerCAFile == "" {
		return fmt.Errorf("a peer region needs its CA certificate: set dr.peer_ca_file (--peer-ca) to the peer's DATA_DIR/tls/ca.pem")
	}
	if c.DR.Router != "" && c.DR.RouterCAFile == "" {
		return fmt.Errorf("dr.router needs dr.router_ca_file")
	}
	if c.DR.RPO != "" {
		if d, err := time.ParseDuration(c.DR.RPO); err != nil || d <= 0 {
			return fmt.Errorf("dr.rpo %q is not a positive duration such as 60s", c.DR.RPO)
		}
	}
	return nil
}

// VersionRetention is DBFSVersionRetention parsed.
func (c *Config) VersionRetention() time.Duration {
	d, _ := time.ParseDuration(c.DBFSVersionRetention)
	return d
}

// StorageDurations returns the key cache TTL and the scrub interval.
func (c *Config) StorageDurations() (keyCacheTTL, scrubInterval time.Duration) {
	keyCacheTTL, _ = time.ParseDuration(c.Storage.KeyCacheTTL)
	scrubInterval = 24 * time.Hour
	if d, err := time.ParseDuration(c.Storage.ScrubInterval); err == nil {
		scrubInterval = d
	}
	return keyCacheTTL, scrubInterval
}

// StoreDSN is the metadata store to open.
func (c *Config) StoreDSN() string {
	if c.Store != "" {
		return c.Store
	}
	return filepath.Join(c.DataDir, "meta.db")
}

// ResourceID is the workspace's id in audit records, in Azure's form.
func (c *Config) ResourceID() string {
	return strings.ToUpper(fmt.Sprintf("/SUBSCRIPTIONS/%s/RESOURCEGROUPS/%s/PROVIDERS/MICROSOFT.DATABRICKS/WORKSPACES/%s",
		c.Workspace.SubscriptionID, c.Workspace.ResourceGroup, c.Workspace.Name))
}
