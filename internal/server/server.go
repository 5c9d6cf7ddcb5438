// Package server assembles one region's control plane: it opens the
// metadata store, the audit journal and the certificate authority, builds
// the domain services, mounts their routes behind the API middleware and
// runs their loops. It owns every goroutine it starts; Close stops them.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tandemdata/tandem/internal/api"
	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/diagnostics"
	"github.com/tandemdata/tandem/internal/compute"
	"github.com/tandemdata/tandem/internal/config"
	"github.com/tandemdata/tandem/internal/dbfs"
	"github.com/tandemdata/tandem/internal/dr"
	"github.com/tandemdata/tandem/internal/gateway"
	"github.com/tandemdata/tandem/internal/identity"
	"github.com/tandemdata/tandem/internal/initscripts"
	"github.com/tandemdata/tandem/internal/jobs"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/metrics"
	"github.com/tandemdata/tandem/internal/nodemetrics"
	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/pki"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/replication"
	"github.com/tandemdata/tandem/internal/secrets"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/account"
	"github.com/tandemdata/tandem/internal/storage/azureblob"
	"github.com/tandemdata/tandem/internal/store"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
	"github.com/tandemdata/tandem/internal/workspace"
)

// Server is a running region.
type Server struct {
	cfg config.Config
	log *slog.Logger

	// Store is the region's metadata store, seen through the disaster-
	// recovery write gate: writes to replicated kinds are refused while the
	// region does not lead. RawStore is the store itself (replication).
	Store    store.Store
	RawStore store.Store
	Journal  *audit.Journal
	CA       *pki.CA
	Identity *identity.Service
	Perms    *permissions.Service
	// Keys is the platform keyring (DATA_DIR/keys).
	Keys *keys.Keyring
	// Storage is the region's storage account: DBFS and workspace contents.
	Storage storage.Backend
	// StorageAccount is Storage with its admin side (settings, health,
	// failover).
	StorageAccount *account.Account
	Jobs           *jobs.Service
	Workspace      *workspace.Service
	DBFS           *dbfs.Service
	Secrets        *secrets.Service
	InitScripts    *initscripts.Service
	// Metrics is the region's Prometheus registry, served at /metrics.
	Metrics *metrics.Registry
	// Diagnostics delivers audit records to the diagnostic settings'
	// destinations and answers audit queries.
	Diagnostics *diagnostics.Service
	// Events writes audit records of actions outside API calls (the
	// ...Result records of asynchronous operations, automated actions).
	Events  *audit.Emitter
	Compute *compute.Service
	// NodeMetrics keeps the nodes' figures for Prometheus and charts.
	NodeMetrics *nodemetrics.Service
	// Gateway is where instances' agents connect (mutual TLS).
	Gateway *gateway.Gateway
	// ShutdownGrace bounds how long Close lets calls in flight finish
	// before it closes their connections (15 s when zero).
	ShutdownGrace time.Duration
	// DR is the region's disaster-recovery role, epoch and follower.
	DR *dr.Region
	// Replication serves the change log and shared keys to the peer.
	Replication *replication.Service
	peer        *replication.Peer
	tlsMu       sync.Mutex
	tlsCAs      []*x509.Certificate
	tlsConf     *tls.Config

	// loops are the background loops Start runs with the server's context.
	loops []func(context.Context)

	mux      *api.Mux
	root     *http.ServeMux
	http     *http.Server
	listener net.Listener
	cert     tls.Certificate

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// loopCancel and loopWG own the background loops.
	loopCancel context.CancelFunc
	loopWG     sync.WaitGroup
}

// kindInfo holds facts about the workspace fixed at its first start.
const kindInfo store.Kind = "server.workspace"

type workspaceInfo struct {
	OrgID   int64 `json:"org_id"`
	Created int64 `json:"created"`
}

// New opens a region's state and builds its services; it does not listen yet.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("region", cfg.Region)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	s := &Server{cfg: cfg, log: log}
	ok := false
	defer func() {
		if !ok {
			s.closeState()
		}
	}()

	var err error
	if s.RawStore, err = sqlstore.Open(ctx, cfg.StoreDSN()); err != nil {
		return nil, err
	}
	if s.Journal, err = audit.OpenJournal(filepath.Join(cfg.DataDir, "audit", "journal")); err != nil {
		return nil, err
	}
	if s.CA, err = pki.LoadOrCreateCA(filepath.Join(cfg.DataDir, "tls"), "Tandem CA "+cfg.Region); err != nil {
		return nil, err
	}
	if s.cert, err = s.serverCertificate(); err != nil {
		return nil, err
	}
	if s.Keys, err = keys.OpenKeyring(filepath.Join(cfg.DataDir, "keys")); err != nil {
		return nil, err
	}
	if err := s.openDR(ctx); err != nil {
		return nil, err
	}
	// The account keeps its settings in the store, so it opens through the
	// write gate, once a new secondary has its copy of them.
	if s.StorageAccount, err = s.openStorage(ctx); err != nil {
		return nil, fmt.Errorf("open the storage account: %w", err)
	}
	s.Storage = s.StorageAccount
	info, err := s.workspaceInfo(ctx)
	if err != nil {
		return nil, err
	}
	s.Metrics = metrics.New()
	s.Diagnostics, err = diagnostics.New(diagnostics.Config{
		Store: s.Store, Journal: s.Journal, Account: s.Storage, Keys: s.Keys,
		Dir: filepath.Join(cfg.DataDir, "audit"), ResourceID: cfg.ResourceID(), Region: cfg.Region,
		Registry: s.Metrics, Log: log.With("component", "audit"),
		DigestPeriod:     time.Duration(cfg.Audit.DigestPeriod),
		JournalRetention: time.Duration(cfg.Audit.JournalRetention),
		QueryRetention:   time.Duration(cfg.Audit.QueryRetention),
	})
	if err != nil {
		return nil, err
	}
	if err := s.Diagnostics.EnsureDefault(ctx); err != nil {
		return nil, fmt.Errorf("create the default diagnostic setting: %w", err)
	}
	auditor := s.Diagnostics.Auditor()
	s.Events = &audit.Emitter{Appender: auditor, ResourceID: cfg.ResourceID()}
	// A region that does not lead has its workspace from its peer: the
	// first-start set-up below is the leader's to do (and its writes would
	// be refused here).
	leads := s.DR.Gate().IsOpen()

	s.Identity = identity.New(s.Store, log.With("component", "identity"))
	s.Perms = permissions.New(s.Store, s.Identity)
	s.Perms.Register(permissions.ObjectType{
		Name: "authorization", Wire: "tokens", Levels: permissions.TokenLevels,
		Category: "accounts", Action: "changeDbTokenAcl",
		// Until an admin configures token permissions, every user may use tokens.
		Default: permissions.CanUse,
		Resolve: func(tx store.Tx, id string) (permissions.Object, error) {
			if id != "tokens" {
				return permissions.Object{}, store.ErrNotFound
			}
			return permissions.Object{Ref: permissions.Ref{Type: "authorization", ID: "tokens"}, Display: "personal access tokens"}, nil
		},
	})
	s.Workspace = &workspace.Service{Store: s.Store, Perms: s.Perms, Storage: s.Storage, Log: log.With("component", "workspace")}
	s.Workspace.Init()
	s.Identity.UserCreated = s.Workspace.EnsureHome
	if leads {
		if err := s.Identity.EnsureBuiltins(ctx); err != nil {
			return nil, fmt.Errorf("create built-in groups: %w", err)
		}
		if err := s.Identity.Bootstrap(ctx, os.Getenv("TANDEM_BOOTSTRAP_TOKEN"), cfg.AdminUser); err != nil {
			return nil, fmt.Errorf("bootstrap admin token: %w", err)
		}
		users, err := s.Identity.UserNames(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.Workspace.EnsureLayout(ctx, users); err != nil {
			return nil, fmt.Errorf("create workspace folders: %w", err)
		}
	}
	s.Identity.TokenPolicy = func(ctx context.Context, p principal.Principal) error {
		return s.Perms.CheckContext(ctx, "authorization", "tokens", permissions.CanUse)
	}

	s.mux = api.NewMux(api.Config{
		Auth:       s.Identity,
		Audit:      auditor,
		Logger:     log.With("component", "api"),
		ResourceID: cfg.ResourceID(),
		OrgID:      info.OrgID,
		Guard:      s.DR.Guard,
	})
	s.mux.Handle(api.Route{Pattern: "GET /healthz", Public: true, NoAudit: true, Handler: s.healthz})
	// The Python SDK probes this, unauthenticated, for the workspace id.
	s.mux.Handle(api.Route{Pattern: "GET /.well-known/databricks-config", Public: true, NoAudit: true,
		Handler: func(context.Context, *api.Request) (any, error) {
			return map[string]any{"workspace_id": fmt.Sprint(info.OrgID)}, nil
		}})
	s.DBFS = &dbfs.Service{Store: s.Store, Storage: s.Storage, Log: log.With("component", "dbfs"), Retention: cfg.VersionRetention()}
	s.Secrets = &secrets.Service{Store: s.Store, Keys: s.Keys, Dir: s.Identity, Audit: auditor, ResourceID: cfg.ResourceID()}
	s.InitScripts = &initscripts.Service{Store: s.Store}
	s.Jobs = &jobs.Service{Store: s.Store, Perms: s.Perms, Log: log.With("component", "jobs"), Audit: auditor,
		ResourceID: cfg.ResourceID(), WorkspaceID: info.OrgID}
	s.Jobs.SchedulingPaused = s.DR.SchedulingPaused
	s.Jobs.Init()
	if err := s.buildCompute(info.OrgID); err != nil {
		return nil, fmt.Errorf("compute: %w", err)
	}
	s.Jobs.Compute, s.Jobs.Runner = s.Compute.Jobs(), s.Compute.JobsRunner(taskSources{s})
	s.buildNodeMetrics()
	s.DR.SetWork(s.Jobs)
	// The peer's geo-replication writes into this region's account, below
	// its encryption (internal/storage/account/pair.go).
	s.Replication = &replication.Service{Store: s.RawStore, Peer: s.peer, Keys: s.Keys, SharedKeys: append(append([]string(nil), sharedKeys...), accountKeys...),
		Objects: s.StorageAccount.Replica(), ObjectsKey: s.StorageAccount.KeyID,
		Self: s.DR.LeaderInfo, Follower: s.peerFollows, Log: log.With("component", "replication")}
	s.connectStorageDR()
	s.Metrics.MustRegister(s.DR.Collector())

	s.mux.Handle(s.Identity.Routes()...)
	s.mux.Handle(s.Perms.Routes()...)
	s.mux.Handle(s.Jobs.Routes()...)
	s.mux.Handle(s.Workspace.Routes()...)
	s.mux.Handle(s.DBFS.Routes()...)
	s.mux.Handle(s.Secrets.Routes()...)
	s.mux.Handle(s.InitScripts.Routes()...)
	s.mux.Handle(s.Compute.Routes()...)
	s.mux.Handle(s.DR.Routes()...)
	s.mux.Handle(s.Replication.Routes()...)
	s.mux.Handle(s.Diagnostics.Routes()...)
	s.mux.Handle(s.Metrics.Routes()...)
	s.mux.Handle(s.NodeMetrics.Routes()...)
	s.mux.Handle(s.StorageAccount.Routes()...)
	// The schedulers and sweeps run only while the region leads; the
	// disaster-recovery supervisor starts and stops them. Audit delivery and
	// the storage account's loops run in every role: a passive region
	// delivers its own records and keeps the copies it receives healthy.
	s.DR.RunWhileLeading(s.Jobs.Run, s.Workspace.Run, s.DBFS.Run, s.Compute.Run)
	s.loops = append(s.loops, s.Identity.Watch, s.Diagnostics.Run, s.StorageAccount.Run, s.DR.Run)
	// Agents reach the gateway outside the API (client certificates, no
	// tokens); everything else is the API.
	s.root = http.NewServeMux()
	s.root.Handle("/gateway/", s.Gateway)
	s.root.Handle("/", s.mux)
	ok = true
	return s, nil
}

// PeerStorage is the peer region's storage, reached over the peer link
// (nil without a peer): the secondary the storage account's
// geo-replication ships to.
func (s *Server) PeerStorage() storage.Backend {
	if s.peer == nil {
		return nil
	}
	return replication.NewRemoteBackend(s.peer)
}

// sharedKeys are the platform keys both regions hold: they wrap replicated
// data (secret scopes' data keys).
var sharedKeys = []string{"secrets"}

// accountKeys are the storage account's platform keys. A follower adopts
// them only once its account holds its leader's account key (taken at its
// first start, see storagePeering): adopting them over an account that
// wrapped its own key with them would lock it out.
var accountKeys = []string{"root", "root-infrastructure", "storage-credentials"}

// openDR builds the region's disaster-recovery side over the raw store,
// decides its role (checking the peer for a higher epoch), hands every
// other service the write gate, and fills an empty secondary from its
// primary before anything reads the workspace.
func (s *Server) openDR(ctx context.Context) error {
	cfg := s.cfg
	if url := cfg.DR.PeerURL(); url != "" {
		p, err := replication.NewPeer(url, cfg.DR.PeerCAFile, s.CA, cfg.Region)
		if err != nil {
			return fmt.Errorf("peer region: %w", err)
		}
		s.peer = p
	}
	var router dr.RouterView
	if cfg.DR.Router != "" {
		r, err := dr.NewHTTPRouter(cfg.DR.Router, cfg.DR.RouterCAFile)
		if err != nil {
			return err
		}
		router = r
	}
	s.DR = dr.New(dr.Config{
		Region: cfg.Region, Secondary: cfg.DR.Primary != "", Store: s.RawStore, Peer: s.peer, Router: router,
		Keys: s.Keys, SharedKeys: sharedKeys, RPO: cfg.DR.RPODuration(), DataDir: cfg.DataDir,
		Log: s.log.With("component", "dr"),
	})
	s.Store = s.DR.Gate()
	if err := s.DR.Open(ctx); err != nil {
		return err
	}
	return s.DR.Bootstrap(ctx)
}

// openStorage opens the region's storage account (DATA_DIR/storage),
// creating it with the configured defaults on first start. With a peer
// region its geo-replication ships to the peer's account (storage_dr.go).
func (s *Server) openStorage(ctx context.Context) (*account.Account, error) {
	return storageAccount(ctx, s.cfg, s.Store, s.Keys, false, s.log.With("component", "storage"), s.storagePeering)
}

func storageAccount(ctx context.Context, cfg config.Config, st store.Store, ring *keys.Keyring, readOnly bool, log *slog.Logger, with ...func(*account.Options)) (*account.Account, error) {
	ttl, scrub := cfg.StorageDurations()
	red, err := account.ParseRedundancy(cfg.Storage.Redundancy)
	if err != nil {
		return nil, err
	}
	var copies account.CopiesFunc
	if az := cfg.Storage.Azure; az != nil {
		copies = account.AzureCopies(azureblob.Config{ServiceURL: az.ServiceURL, Account: az.Account, Key: az.Key}, az.ContainerPrefix)
	}
	opts := account.Options{
		Name: "root", Dir: filepath.Join(cfg.DataDir, "storage"), Zones: cfg.Storage.Zones, Copies: copies,
		Store: st, Keys: ring, KeyCacheTTL: ttl, ScrubInterval: scrub, ReadOnly: readOnly,
		Defaults: account.Settings{Redundancy: red, Encryption: account.Encryption{
			KeySource: account.KeySourcePlatform, InfrastructureEncryption: cfg.Storage.InfrastructureEncryption}},
		Log: log,
	}
	for _, f := range with {
		f(&opts)
	}
	return account.Open(ctx, opts)
}

// OpenStorage opens a region's storage account from its data directory,
// for tools and tests. Read-only (tandem audit verify) it may run beside
// the region's server and writes nothing; read-write it must not. close
// releases the store and the account.
func OpenStorage(ctx context.Context, cfg config.Config, readOnly bool) (acc storage.Backend, close func(), err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	st, err := sqlstore.Open(ctx, cfg.StoreDSN())
	if err != nil {
		return nil, nil, err
	}
	ring, err := keys.OpenKeyring(filepath.Join(cfg.DataDir, "keys"))
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	a, err := storageAccount(ctx, cfg, st, ring, readOnly, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return a, func() { a.Close(); st.Close() }, nil
}

func (s *Server) serverCertificate() (tls.Certificate, error) {
	if s.cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			return cert, fmt.Errorf("load TLS certificate: %w", err)
		}
		return cert, nil
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(s.cfg.Listen); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	hosts = append(hosts, s.cfg.TLS.Hosts...)
	return s.CA.ServerCertificate(filepath.Join(s.cfg.DataDir, "tls"), "tandem "+s.cfg.Region, hosts)
}

// workspaceInfo reads the workspace's fixed facts, creating them on first
// start. They live in the store, so a secondary region has the same ones.
func (s *Server) workspaceInfo(ctx context.Context) (workspaceInfo, error) {
	var info workspaceInfo
	_, err := s.Store.Update(ctx, func(tx store.Tx) error {
		var err error
		info, err = store.Get[workspaceInfo](tx, kindInfo, "info")
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var b [8]byte
		rand.Read(b[:])
		info = workspaceInfo{OrgID: int64(binary.BigEndian.Uint64(b[:])>>12) + 1, Created: tx.Now().UnixMilli()}
		return store.Put(tx, kindInfo, "info", info)
	})
	return info, err
}

func (s *Server) healthz(ctx context.Context, req *api.Request) (any, error) {
	return map[string]string{"status": "ok", "region": s.cfg.Region}, nil
}

// Handler is the server's HTTP handler (for in-process tests).
func (s *Server) Handler() http.Handler { return s.root }

// Routes lists every API route the server serves.
func (s *Server) Routes() []api.Route { return s.mux.Routes() }

// TLSConfig is the server's TLS configuration. Client certificates are
// verified against the region's own CA (agents) and, with a peer region,
// the peer's CA, read again when its file changes.
func (s *Server) TLSConfig() *tls.Config {
	base := pki.ServerConfig(s.cert, s.CA.Pool())
	if s.peer == nil {
		return base
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cas := s.peer.CAs()
		s.tlsMu.Lock()
		defer s.tlsMu.Unlock()
		if s.tlsConf == nil || !sameCerts(cas, s.tlsCAs) {
			c := pki.ServerConfig(s.cert, s.peer.Pool(s.CA.Pool()))
			// A config returned here is used as it is: ServeTLS does not add h2.
			c.NextProtos = []string{"h2", "http/1.1"}
			s.tlsConf, s.tlsCAs = c, cas
		}
		return s.tlsConf, nil
	}
	return base
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// CAFile is the path of the PEM file clients trust.
func (s *Server) CAFile() string { return filepath.Join(s.cfg.DataDir, "tls", pki.CAFile) }

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	s.listener = l
	if s.Compute.ControlURL == "" {
		s.Compute.ControlURL = s.URL()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	loopCtx, loopCancel := context.WithCancel(context.Background())
	s.loopCancel = loopCancel
	s.http = &http.Server{
		Handler:           s.root,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	// Long polls of agents end at shutdown instead of holding it up.
	s.http.RegisterOnShutdown(s.Gateway.Close)
	for _, loop := range s.loops {
		s.loopWG.Add(1)
		go func() {
			defer s.loopWG.Done()
			loop(loopCtx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.log.Info("serving", "url", s.URL(), "ca_file", s.CAFile())
	return nil
}

// URL is the https URL of the server.
func (s *Server) URL() string {
	addr := s.cfg.Listen
	if s.listener != nil {
		addr = s.listener.Addr().String()
	}
	return "https://" + addr
}

// Close stops serving (letting calls in flight finish, up to a bound), stops
// every loop and closes the state.
func (s *Server) Close() error {
	// The loops stop first: a reconciler must not judge instances by
	// heartbeats that the closing listener no longer takes.
	if s.loopCancel != nil {
		s.loopCancel()
	}
	s.loopWG.Wait()
	if s.http != nil {
		grace := s.ShutdownGrace
		if grace <= 0 {
			grace = 15 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := s.http.Shutdown(ctx); err != nil {
			// A call still in flight past the bound (a body that stopped
			// arriving, a reader that stopped reading) would hold what the
			// state's close waits for: its connection is closed under it.
			s.log.Warn("calls still in flight at shutdown: closing their connections", "err", err)
			s.http.Close()
		}
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return s.closeState()
}

func (s *Server) closeState() error {
	var errs []error
	if s.Diagnostics != nil {
		errs = append(errs, s.Diagnostics.Close())
	}
	if s.StorageAccount != nil {
		errs = append(errs, s.StorageAccount.Close())
	}
	if s.Journal != nil {
		errs = append(errs, s.Journal.Close())
	}
	if s.RawStore != nil {
		errs = append(errs, s.RawStore.Close())
	}
	return errors.Join(errs...)
}
