package account

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/azureblob"
	"github.com/tandemdata/tandem/internal/storage/geo"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/storage/redundancy"
	"github.com/tandemdata/tandem/internal/storage/sse"
	"github.com/tandemdata/tandem/internal/store"
)

// Kind is the store kind of account settings, keyed by account name.
const Kind store.Kind = "storage.account"

// CopiesFunc returns the backends of one site's copies: site is "primary"
// or "secondary"; zoned asks for the zones of ZRS rather than the copies of
// LRS. Tests plug Azurite containers or faulty backends in here.
type CopiesFunc func(ctx context.Context, site string, zoned bool) ([]redundancy.Copy, error)

// Options configure an account.
type Options struct {
	// Name names the account ("root": the workspace's DBFS root account).
	Name string
	// Dir holds the account's local state: copy directories (unless Copies
	// says otherwise), copy health, the geo journal.
	Dir string
	// Zones are the directories of the three ZRS zones (default
	// Dir/primary/zone-N); give each its own disk for real zone redundancy.
	Zones []string
	// Copies overrides where copies live (default: directories).
	Copies CopiesFunc
	// Secondary, if set, is the secondary region's account (a remote
	// storage.Backend the disaster-recovery layer provides) that geo-
	// replication ships to, instead of the local secondary copies. Account
	// failover is then the disaster-recovery runbook's (promoting the
	// other region), and Failover refuses.
	Secondary func(ctx context.Context) (storage.Backend, error)
	Store     store.Store
	Keys      *keys.Keyring
	// Defaults are the settings of a new account.
	Defaults Settings
	// KeyCacheTTL is how long an unwrapped account key is trusted (0:
	// every call asks the KEK).
	KeyCacheTTL time.Duration
	// ScrubInterval is the time between full scrubber passes; Probe the
	// time between copy health probes.
	ScrubInterval, Probe time.Duration
	// GeoBackoff bounds the geo shipper's retry wait.
	GeoMinBackoff, GeoMaxBackoff time.Duration
	// ReadOnly opens the account for reading only, beside a server that
	// may be running (offline tools such as tandem audit verify): no geo
	// journal is opened and writes fail with storage.ErrReadOnly.
	ReadOnly bool
	Log      *slog.Logger

	// HoldShipping, if set, holds geo-replication's shipments while it
	// returns true (a disaster-recovery region ships only while it leads).
	HoldShipping func() bool
	// RegionLocal, if set, names objects geo-replication never ships to
	// the secondary (see geo.Config.Local).
	RegionLocal func(name string) bool
	// Pairing, if set, lets a passive disaster-recovery region's account
	// take its leader's account key before it first opens (pair.go).
	Pairing *Pairing
}

// Account is a storage account: a storage.Backend.
type Account struct {
	opts Options

	// mu is held shared by writes and exclusively while the stack changes,
	// so a reconfiguration never races a write (see restartLoopsLocked for
	// the loops).
	mu  sync.RWMutex
	set Settings
	// now is the stack in use (current). It is replaced only with mu held
	// exclusively (setStack), and read without mu: the loops (the geo
	// shipper names the account key on every shipment) must not take it.
	now atomic.Pointer[stack]

	loopMu  sync.Mutex
	loopCtx context.Context
	cancel  context.CancelFunc
	loops   sync.WaitGroup

	// names orders a write and the infrastructure converter's rewrite of
	// the same object (taken only while a conversion runs).
	names [64]sync.Mutex
	// convDone tells Run that the conversion pass is complete.
	convDone chan struct{}
	conv     convProgress

	// appends serializes the writes of one name (append.go).
	appends [64]sync.Mutex
	// garbage holds, by name, parts the last append dropped (append.go);
	// started is when this process opened the account, instance names it.
	garbage  sync.Map
	started  time.Time
	instance string
}

type convProgress struct {
	mu        sync.Mutex
	converted int64
	remaining int64
	lastError string
}

func (a *Account) lockName(name string) func() {
	h := fnv.New32a()
	h.Write([]byte(name))
	m := &a.names[h.Sum32()%uint32(len(a.names))]
	m.Lock()
	return m.Unlock
}

var _ storage.Backend = (*Account)(nil)

// stack is one composition of the layers.
type stack struct {
	top       storage.Backend
	svc       *sse.Layer
	infra     *sse.Layer
	geo       *geo.Layer
	primary   *redundancy.Layer
	secondary *redundancy.Layer
}

// below is the layer under the encryption layers.
func (s *stack) below() storage.Backend {
	if s.geo != nil {
		return s.geo
	}
	return s.primary
}

func (s *stack) close() {
	if s.geo != nil {
		s.geo.Close()
	}
	s.primary.Close()
	if s.secondary != nil {
		s.secondary.Close()
	}
}

// Open loads the account's settings (creating them from Defaults) and
// builds its stack.
func Open(ctx context.Context, opts Options) (*Account, error) {
	if opts.Name == "" {
		opts.Name = "root"
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if len(opts.Zones) == 0 {
		for i := 1; i <= 3; i++ {
			opts.Zones = append(opts.Zones, filepath.Join(opts.Dir, primary, fmt.Sprintf("zone-%d", i)))
		}
	}
	if len(opts.Zones) != 3 {
		return nil, fmt.Errorf("storage: ZRS needs three zones, %d configured", len(opts.Zones))
	}
	if opts.Copies == nil {
		opts.Copies = dirCopies(opts.Dir, opts.Zones)
	}
	a := &Account{opts: opts, convDone: make(chan struct{}, 1), started: time.Now(), instance: newObjectID()}
	set, err := a.loadSettings(ctx)
	if err != nil {
		return nil, err
	}
	if opts.Pairing != nil && !opts.ReadOnly {
		if err := a.pair(ctx, set); err != nil {
			return nil, err
		}
	}
	st, err := a.build(ctx, set, set.Encryption)
	if err != nil {
		return nil, err
	}
	// A crash in the middle of a key switch leaves a second wrap: keep
	// only the configured key's.
	if len(st.svc.Wraps()) > 1 && !opts.ReadOnly {
		kek, err := a.kek(ctx, set.Encryption)
		if err != nil {
			st.close()
			return nil, err
		}
		if err := st.svc.Retain(ctx, kek); err != nil {
			st.close()
			return nil, err
		}
	}
	a.setStack(st)
	a.set = set
	return a, nil
}

// dirCopies keeps copies in directories: LRS copies under
// DIR/<site>/copy-N, ZRS zones in the configured zone directories.
func dirCopies(dir string, zones []string) CopiesFunc {
	return func(ctx context.Context, site string, zoned bool) ([]redundancy.Copy, error) {
		var out []redundancy.Copy
		for i := 1; i <= 3; i++ {
			name, path := fmt.Sprintf("copy-%d", i), filepath.Join(dir, site, fmt.Sprintf("copy-%d", i))
			if zoned {
				name, path = fmt.Sprintf("zone-%d", i), zones[i-1]
			}
			b, err := local.New(path)
			if err != nil {
				return nil, err
			}
			out = append(out, redundancy.Copy{Name: name, Backend: b})
		}
		return out, nil
	}
}

// AzureCopies keeps copies as containers of one Azure Blob Storage account:
// <prefix>-<site>-copy-N for LRS, <prefix>-<site>-zone-N for ZRS.
func AzureCopies(cfg azureblob.Config, prefix string) CopiesFunc {
	if prefix == "" {
		prefix = "tandem"
	}
	return func(ctx context.Context, site string, zoned bool) ([]redundancy.Copy, error) {
		var out []redundancy.Copy
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("copy-%d", i)
			if zoned {
				name = fmt.Sprintf("zone-%d", i)
			}
			c := cfg
			c.Container = strings.ToLower(prefix + "-" + site + "-" + name)
			b, err := azureblob.New(ctx, c)
			if err != nil {
				return nil, err
			}
			out = append(out, redundancy.Copy{Name: name, Backend: b})
		}
		return out, nil
	}
}

func (a *Account) loadSettings(ctx context.Context) (Settings, error) {
	var set Settings
	_, err := a.opts.Store.Update(ctx, func(tx store.Tx) error {
		var err error
		set, err = store.Get[Settings](tx, Kind, a.opts.Name)
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		set = a.opts.Defaults
		set.Name, set.Site, set.Updated = a.opts.Name, primary, tx.Now().UnixMilli()
		if set.Redundancy == "" {
			set.Redundancy = LRS
		}
		if set.Encryption.KeySource == "" {
			set.Encryption.KeySource = KeySourcePlatform
		}
		if err := set.Validate(); err != nil {
			return fmt.Errorf("storage defaults: %w", err)
		}
		return store.Put(tx, Kind, a.opts.Name, set)
	})
	return set, err
}

func otherSite(site string) string {
	if site == second {
		return primary
	}
	return second
}

// build composes the layers for set, with the service layer opened by the
// KEK of enc (the current key while a switch is being prepared).
func (a *Account) build(ctx context.Context, set Settings, enc Encryption) (*stack, error) {
	st := &stack{}
	zoned := set.Redundancy.Zoned() && set.Site == primary
	prim, err := a.copySet(ctx, set.Site, zoned)
	if err != nil {
		return nil, err
	}
	st.primary = prim
	var base storage.Backend = prim
	if set.Redundancy.Geo() && !a.opts.ReadOnly {
		var sec storage.Backend
		if a.opts.Secondary != nil {
			remote, err := a.opts.Secondary(ctx)
			if err != nil {
				st.close()
				return nil, fmt.Errorf("the secondary region's account: %w", err)
			}
			sec = remote
		} else {
			copies, err := a.copySet(ctx, otherSite(set.Site), false)
			if err != nil {
				st.close()
				return nil, err
			}
			st.secondary, sec = copies, copies
		}
		g, err := geo.Open(geo.Config{Primary: prim, Secondary: sec, JournalDir: a.journalDir(set.Site),
			ReadAccess: set.Redundancy.ReadAccess(), MinBackoff: a.opts.GeoMinBackoff, MaxBackoff: a.opts.GeoMaxBackoff,
			Hold: a.opts.HoldShipping, Local: regionLocal(a.opts.RegionLocal), Last: isManifest, Log: a.opts.Log.With("component", "storage-geo")})
		if err != nil {
			st.close()
			return nil, err
		}
		st.geo, base = g, g
	}
	if set.Encryption.InfrastructureEncryption || set.InfrastructureConversion == Disabling {
		ik, err := a.opts.Keys.KEK(a.opts.Name + "-infrastructure")
		if err != nil {
			st.close()
			return nil, err
		}
		// While objects are converted the layer reads both formats, and
		// writes its own (turning on) or the plain one (turning off).
		st.infra, err = sse.Open(ctx, sse.Config{Inner: base, KEK: ik, Record: "infrastructure", Algorithm: sse.XChaCha20Poly1305,
			Mixed: set.InfrastructureConversion == Enabling, WriteThrough: set.InfrastructureConversion == Disabling})
		if err != nil {
			st.close()
			return nil, fmt.Errorf("open infrastructure encryption: %w", err)
		}
		base = st.infra
	}
	kek, err := a.kek(ctx, enc)
	if err != nil {
		st.close()
		return nil, err
	}
	st.svc, err = sse.Open(ctx, sse.Config{Inner: base, KEK: kek, Record: "service", Algorithm: sse.AES256GCM, KeyCacheTTL: a.opts.KeyCacheTTL})
	if err != nil {
		st.close()
		return nil, fmt.Errorf("open service encryption: %w", err)
	}
	st.top = st.svc
	return st, nil
}

func (a *Account) journalDir(site string) string { return filepath.Join(a.opts.Dir, "journal-"+site) }

func (a *Account) copySet(ctx context.Context, site string, zoned bool) (*redundancy.Layer, error) {
	copies, err := a.opts.Copies(ctx, site, zoned)
	if err != nil {
		return nil, fmt.Errorf("storage copies of the %s site: %w", site, err)
	}
	kind := "copies"
	if zoned {
		kind = "zones"
	}
	if err := os.MkdirAll(a.opts.Dir, 0o700); err != nil {
		return nil, err
	}
	return redundancy.Open(ctx, redundancy.Config{Copies: copies, StateFile: filepath.Join(a.opts.Dir, site+"-"+kind+".json"),
		Log: a.opts.Log.With("component", "storage-copies", "site", site)})
}

// credentialsKey seals the vault tokens kept in the settings.
const credentialsKey = "storage-credentials"

// kek returns the key-encryption key an encryption setting names.
func (a *Account) kek(ctx context.Context, enc Encryption) (keys.KEK, error) {
	switch enc.KeySource {
	case KeySourceKeyVault, KeySourceTransit:
		vk := enc.KeyVault
		if enc.KeySource == KeySourceTransit {
			vk = enc.Transit
		}
		token, err := a.openToken(ctx, vk)
		if err != nil {
			return nil, err
		}
		hc, err := vaultClient(vk.CAPEM)
		if err != nil {
			return nil, err
		}
		if enc.KeySource == KeySourceTransit {
			return keys.NewTransitKEK(keys.TransitConfig{Address: vk.URL, Mount: vk.Mount, KeyName: vk.KeyName, Token: token, Client: hc}), nil
		}
		return keys.NewKeyVaultKEK(keys.KeyVaultConfig{URL: vk.URL, KeyName: vk.KeyName, KeyVersion: vk.KeyVersion, Token: token, Client: hc}), nil
	}
	return a.opts.Keys.KEK(a.opts.Name)
}

func vaultClient(caPEM string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("ca_pem holds no PEM certificate")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}, nil
}

func (a *Account) sealToken(ctx context.Context, vk *VaultKey) error {
	if vk == nil || vk.Token == "" {
		return nil
	}
	k, err := a.opts.Keys.KEK(credentialsKey)
	if err != nil {
		return err
	}
	sealed, err := k.Wrap(ctx, []byte(vk.Token))
	if err != nil {
		return err
	}
	vk.SealedToken, vk.Token = sealed, ""
	return nil
}

func (a *Account) openToken(ctx context.Context, vk *VaultKey) (string, error) {
	if vk == nil {
		return "", errors.New("no vault key configured")
	}
	if vk.Token != "" {
		return vk.Token, nil
	}
	if len(vk.SealedToken) == 0 {
		return "", nil
	}
	k, err := a.opts.Keys.KEK(credentialsKey)
	if err != nil {
		return "", err
	}
	t, err := k.Unwrap(ctx, vk.SealedToken)
	if err != nil {
		return "", fmt.Errorf("open the vault token: %w", err)
	}
	return string(t), nil
}

// current is the stack in use, without waiting for a reconfiguration.
func (a *Account) current() *stack { return a.now.Load() }

// setStack makes st the stack in use; the caller holds mu.
func (a *Account) setStack(st *stack) { a.now.Store(st) }

func (a *Account) writable() error {
	if a.opts.ReadOnly {
		return fmt.Errorf("%w: the account was opened read-only", storage.ErrReadOnly)
	}
	return nil
}

func checkName(name string) error {
	if len(name) >= len(storage.ReservedPrefix) && name[:len(storage.ReservedPrefix)] == storage.ReservedPrefix {
		return fmt.Errorf("%w: names under %s are the account's own", storage.ErrInvalidName, storage.ReservedPrefix)
	}
	return nil
}

// Put stores an object through every layer.
func (a *Account) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := a.writable(); err != nil {
		return err
	}
	defer a.lockAppend(name)()
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.set.InfrastructureConversion != "" {
		defer a.lockName(name)()
	}
	return a.view(a.current()).Put(ctx, name, r)
}

// Get reads a plaintext range.
func (a *Account) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return a.view(a.current()).Get(ctx, name, offset, length)
}

// Stat describes an object with its plaintext size.
func (a *Account) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := checkName(name); err != nil {
		return storage.ObjectInfo{}, err
	}
	return a.view(a.current()).Stat(ctx, name)
}

// Delete removes an object.
func (a *Account) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := a.writable(); err != nil {
		return err
	}
	defer a.lockAppend(name)()
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.set.InfrastructureConversion != "" {
		defer a.lockName(name)()
	}
	return a.view(a.current()).Delete(ctx, name)
}

// List lists the callers' objects (never the account's own records).
func (a *Account) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return a.view(a.current()).List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if checkName(oi.Name) != nil {
			return nil
		}
		return fn(oi)
	})
}

// Secondary is the read-only secondary endpoint of an RA- account (reads
// are refused without read access or geo-replication).
func (a *Account) Secondary() storage.Backend {
	// The key records are read from the secondary, possibly another
	// region's over the link: not with the account held (a reload would
	// wait behind the link), and not for ever.
	a.mu.RLock()
	st, enc := a.current(), a.set.Encryption
	a.mu.RUnlock()
	if st.geo == nil {
		return refused{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b storage.Backend = st.geo.Secondary()
	// Decrypt with the same layers: the secondary holds the same records.
	if st.infra != nil {
		infra, err := sse.Open(ctx, sse.Config{Inner: b, KEK: a.infraKEK(), Record: "infrastructure", Algorithm: sse.XChaCha20Poly1305})
		if err != nil {
			return refused{err: err}
		}
		b = infra
	}
	kek, err := a.kek(ctx, enc)
	if err != nil {
		return refused{err: err}
	}
	svc, err := sse.Open(ctx, sse.Config{Inner: b, KEK: kek, Record: "service", Algorithm: sse.AES256GCM, KeyCacheTTL: a.opts.KeyCacheTTL})
	if err != nil {
		return refused{err: err}
	}
	return appendView{b: svc}
}

func (a *Account) infraKEK() keys.KEK {
	k, _ := a.opts.Keys.KEK(a.opts.Name + "-infrastructure")
	return k
}

type refused struct{ err error }

func (r refused) e() error {
	if r.err != nil {
		return r.err
	}
	return fmt.Errorf("%w: the account has no secondary endpoint (use RA-GRS or RA-GZRS)", storage.ErrReadOnly)
}
func (r refused) Put(context.Context, string, io.Reader) error { return r.e() }
func (r refused) Get(context.Context, string, int64, int64) (io.ReadCloser, error) {
	return nil, r.e()
}
func (r refused) Stat(context.Context, string) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, r.e()
}
func (r refused) Delete(context.Context, string) error { return r.e() }
func (r refused) List(context.Context, string, func(storage.ObjectInfo) error) error {
	return r.e()
}

// Run runs the account's loops (scrubbers, geo shipper) until ctx ends.
func (a *Account) Run(ctx context.Context) {
	a.loopMu.Lock()
	a.loopCtx = ctx
	a.restartLoopsLocked()
	a.loopMu.Unlock()
	if a.opts.Pairing != nil && !a.opts.ReadOnly {
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			a.followSettings(ctx, 5*time.Second)
		}()
	}
	for {
		select {
		case <-a.convDone:
			if err := a.completeConversion(ctx); err != nil && ctx.Err() == nil {
				a.opts.Log.Error("storage infrastructure encryption: conversion not completed", "err", err)
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	a.loopMu.Lock()
	a.stopLoopsLocked()
	a.loopCtx = nil
	a.loopMu.Unlock()
}

// The loops and mu: Reload, Update and completeConversion stop the loops
// before they take mu and start them again once they have let go of it, so
// a loop waiting on mu's read side cannot hold them up. Failover is the
// exception: a planned failover waits, holding mu, for the shipper to empty
// its backlog, so the shipper must not take mu (current does not).

// restartLoopsLocked starts the current stack's loops; the caller holds
// loopMu and not mu.
func (a *Account) restartLoopsLocked() {
	a.mu.RLock()
	defer a.mu.RUnlock()
	a.startLoopsLocked()
}

// startLoopsLocked starts the current stack's loops; the caller holds
// loopMu and a.mu.
func (a *Account) startLoopsLocked() {
	if a.loopCtx == nil || a.loopCtx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(a.loopCtx)
	a.cancel = cancel
	st := a.current()
	run := func(fn func(context.Context)) {
		a.loops.Add(1)
		go func() {
			defer a.loops.Done()
			fn(ctx)
		}()
	}
	run(func(ctx context.Context) { st.primary.Run(ctx, a.opts.ScrubInterval, a.opts.Probe) })
	if st.secondary != nil {
		run(func(ctx context.Context) { st.secondary.Run(ctx, a.opts.ScrubInterval, a.opts.Probe) })
	}
	if st.geo != nil {
		run(st.geo.Run)
	}
	if conv := a.set.InfrastructureConversion; conv != "" && st.infra != nil {
		run(func(ctx context.Context) { a.runConversion(ctx, st, conv == Enabling) })
	}
}

func (a *Account) stopLoopsLocked() {
	if a.cancel != nil {
		a.cancel()
		a.cancel = nil
	}
	a.loops.Wait()
}

// Settings returns the current settings (tokens never included).
func (a *Account) Settings() Settings {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return redact(a.set)
}

func redact(s Settings) Settings {
	for _, vk := range []**VaultKey{&s.Encryption.KeyVault, &s.Encryption.Transit} {
		if *vk != nil {
			c := **vk
			c.Token, c.SealedToken = "", nil
			*vk = &c
		}
	}
	return s
}

// empty reports whether the account holds no caller object.
func (a *Account) empty(ctx context.Context, st *stack) (bool, error) {
	errStop := errors.New("stop")
	n := 0
	err := st.primary.List(ctx, "", func(oi storage.ObjectInfo) error {
		if _, appended := appendLogicalName(oi.Name); checkName(oi.Name) == nil || appended {
			n++
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return false, err
	}
	return n == 0, nil
}

// Update changes the account's settings: it plans the change, rebuilds
// the stack (converting copies, starting or stopping geo-replication,
// re-wrapping the account key) with writes paused, and commits the new
// settings to the store. by names the caller for the settings' record.
func (a *Account) Update(ctx context.Context, next Settings, by string) (Settings, error) {
	a.loopMu.Lock()
	defer a.loopMu.Unlock()
	a.stopLoopsLocked()
	defer a.restartLoopsLocked()
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.set
	next.Name, next.Site = cur.Name, cur.Site
	next.LastFailoverTime, next.FailoverLastSyncTime = cur.LastFailoverTime, cur.FailoverLastSyncTime
	keepTokens(cur.Encryption, &next.Encryption)
	empty, err := a.empty(ctx, a.current())
	if err != nil {
		return Settings{}, err
	}
	change, err := PlanChange(cur, next, empty)
	if err != nil {
		return Settings{}, &InvalidError{err}
	}
	for _, vk := range []*VaultKey{next.Encryption.KeyVault, next.Encryption.Transit} {
		if err := a.sealToken(ctx, vk); err != nil {
			return Settings{}, err
		}
	}
	var newKEK keys.KEK
	if change.Rewrap {
		// The new key must work before anything changes.
		if newKEK, err = a.kek(ctx, next.Encryption); err != nil {
			return Settings{}, &InvalidError{err}
		}
		if _, err := newKEK.Wrap(ctx, keys.NewDEK()); err != nil {
			return Settings{}, fmt.Errorf("the new key cannot wrap: %w", err)
		}
	}
	old := a.current()
	if !change.InfraConvert {
		next.InfrastructureConversion = cur.InfrastructureConversion
	} else if next.Encryption.InfrastructureEncryption {
		next.InfrastructureConversion = Enabling
	} else {
		next.InfrastructureConversion = Disabling
	}
	// Infrastructure encryption on an empty account: a new stack opens it;
	// the key records of the old layers are removed from the copies.
	if change.Infra {
		var below storage.Backend = old.primary
		if old.geo != nil {
			below = old.geo
		}
		for _, rec := range []string{"keys/service", "keys/infrastructure"} {
			if err := below.Delete(ctx, storage.ReservedPrefix+rec); err != nil {
				return Settings{}, err
			}
		}
	}
	if change.Convert {
		to, err := a.copySet(ctx, cur.Site, next.Redundancy.Zoned() && cur.Site == primary)
		if err != nil {
			return Settings{}, err
		}
		err = convert(ctx, old.primary, to)
		to.Close()
		if err != nil {
			return Settings{}, fmt.Errorf("convert %s to %s: %w", cur.Redundancy, next.Redundancy, err)
		}
	}
	if change.GeoOff {
		os.RemoveAll(a.journalDir(cur.Site))
	}
	st, err := a.build(ctx, next, cur.Encryption)
	if err != nil {
		return Settings{}, err
	}
	if change.Rewrap {
		if err := st.svc.AddWrap(ctx, newKEK); err != nil {
			st.close()
			return Settings{}, err
		}
	}
	next.Updated, next.UpdatedBy = time.Now().UnixMilli(), by
	if _, err := a.opts.Store.Update(ctx, func(tx store.Tx) error { return store.Put(tx, Kind, a.opts.Name, next) }); err != nil {
		st.close()
		return Settings{}, err
	}
	if change.Rewrap {
		if err := st.svc.Retain(ctx, newKEK); err != nil {
			a.opts.Log.Error("storage key switch: the old wrap was not removed; it will be at the next start", "err", err)
		}
	}
	if change.GeoOn && st.geo != nil {
		if err := st.geo.InitialSync(ctx); err != nil {
			a.opts.Log.Error("storage geo-replication: initial sync not started", "err", err)
		}
	}
	if st != old {
		old.close()
	}
	a.setStack(st)
	a.set = next
	return redact(next), nil
}

// keepTokens carries the stored sealed tokens over to an update that names
// the same vault without sending the token again.
func keepTokens(cur Encryption, next *Encryption) {
	pairs := [][2]*VaultKey{{cur.KeyVault, next.KeyVault}, {cur.Transit, next.Transit}}
	for _, p := range pairs {
		if p[0] != nil && p[1] != nil && p[1].Token == "" && p[0].URL == p[1].URL {
			p[1].SealedToken = p[0].SealedToken
		}
	}
}

// InvalidError is a settings change the account refuses.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// convert copies every stored object from one copy set to another (LRS to
// ZRS and back): the bytes as stored, still encrypted. Objects the target
// has that the source has not are removed, and the source is emptied
// afterwards.
func convert(ctx context.Context, from, to *redundancy.Layer) error {
	have := map[string]bool{}
	err := from.List(ctx, "", func(oi storage.ObjectInfo) error {
		have[oi.Name] = true
		r, err := from.Get(ctx, oi.Name, 0, -1)
		if err != nil {
			return err
		}
		defer r.Close()
		return to.Put(ctx, oi.Name, r)
	})
	if err != nil {
		return err
	}
	var stale []string
	to.List(ctx, "", func(oi storage.ObjectInfo) error {
		if !have[oi.Name] {
			stale = append(stale, oi.Name)
		}
		return nil
	})
	for _, n := range stale {
		to.Delete(ctx, n)
	}
	for n := range have {
		from.Delete(ctx, n)
	}
	return nil
}

// RotateKey rotates the account's KEK: for platform keys a new version of
// the platform key, for a customer-managed key the vault's newest version
// (rotation itself happens in the vault). The account key is re-wrapped;
// no object is rewritten.
func (a *Account) RotateKey(ctx context.Context) (KeyStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	kek, err := a.kek(ctx, a.set.Encryption)
	if err != nil {
		return KeyStatus{}, err
	}
	if a.set.Encryption.KeySource == KeySourcePlatform {
		if err := a.opts.Keys.Rotate(a.opts.Name); err != nil {
			return KeyStatus{}, err
		}
	}
	if err := a.current().svc.Rewrap(ctx, kek); err != nil {
		return KeyStatus{}, err
	}
	return a.keyStatusLocked(), nil
}

// Failover makes the secondary's copy the account. Planned first ships
// every journaled change (writes paused); Unplanned promotes the
// secondary as it is, losing the changes after the Last Sync Time.
func (a *Account) Failover(ctx context.Context, kind FailoverKind, by string) (Settings, error) {
	a.loopMu.Lock()
	defer a.loopMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.current()
	if st.geo == nil {
		_, err := PlanFailover(a.set, false, time.Time{}, time.Now())
		return Settings{}, &InvalidError{err}
	}
	if a.opts.Secondary != nil {
		return Settings{}, &InvalidError{errors.New("the secondary is another region's account: fail over with the disaster-recovery runbook, which promotes that region")}
	}
	if kind == Planned {
		// Writes are paused (a.mu); the shipper still runs: wait for it.
		for st.geo.Status().Backlog > 0 {
			select {
			case <-ctx.Done():
				return Settings{}, fmt.Errorf("planned failover: the secondary did not catch up: %w", ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	a.stopLoopsLocked()
	defer a.startLoopsLocked()
	gs := st.geo.Status()
	next, err := PlanFailover(a.set, gs.InitialSync, gs.LastSyncTime, time.Now())
	if err != nil {
		return Settings{}, &InvalidError{err}
	}
	next.Updated, next.UpdatedBy = time.Now().UnixMilli(), by
	st.close()
	nst, err := a.build(ctx, next, next.Encryption)
	if err != nil {
		// Back to the old stack: nothing changed yet.
		if st2, err2 := a.build(ctx, a.set, a.set.Encryption); err2 == nil {
			a.setStack(st2)
		}
		return Settings{}, fmt.Errorf("open the secondary copy: %w", err)
	}
	if _, err := a.opts.Store.Update(ctx, func(tx store.Tx) error { return store.Put(tx, Kind, a.opts.Name, next) }); err != nil {
		nst.close()
		if st2, err2 := a.build(ctx, a.set, a.set.Encryption); err2 == nil {
			a.setStack(st2)
		}
		return Settings{}, err
	}
	// The old primary's journal is void: what it held is lost (Unplanned)
	// or shipped (Planned).
	os.RemoveAll(a.journalDir(a.set.Site))
	a.setStack(nst)
	a.set = next
	a.opts.Log.Warn("storage account failed over", "site", next.Site, "last_sync_time", time.UnixMilli(next.FailoverLastSyncTime))
	return redact(next), nil
}

// KeyStatus describes the account's keys (never their material).
type KeyStatus struct {
	KeySource string `json:"key_source"`
	// KeyID names the KEK: platform/<name>, a key vault key URL or a
	// Transit key path.
	KeyID string `json:"key_id"`
	// KeyVersion is the KEK version that wraps the account key now.
	KeyVersion string `json:"key_version,omitempty"`
	// WrappedAt is when the account key was last wrapped (rotation).
	WrappedAt                int64  `json:"wrapped_at"`
	Algorithm                string `json:"algorithm"`
	InfrastructureEncryption bool   `json:"infrastructure_encryption"`
	InfrastructureAlgorithm  string `json:"infrastructure_algorithm,omitempty"`
	InfrastructureKeyID      string `json:"infrastructure_key_id,omitempty"`
	InfrastructureKeyVersion string `json:"infrastructure_key_version,omitempty"`
}

func (a *Account) keyStatusLocked() KeyStatus {
	st := a.current()
	ki := st.svc.KeyInfo()
	ks := KeyStatus{KeySource: a.set.Encryption.KeySource, KeyID: ki.KEK, WrappedAt: ki.WrappedAt.UnixMilli(), Algorithm: ki.Algorithm}
	if v, ok := a.kekVersioned(); ok {
		ks.KeyVersion = v.WrappedVersion(ki.Wrapped)
	}
	if st.infra != nil {
		ii := st.infra.KeyInfo()
		ks.InfrastructureEncryption, ks.InfrastructureAlgorithm, ks.InfrastructureKeyID = true, ii.Algorithm, ii.KEK
		if v, ok := a.infraKEK().(keys.Versioned); ok {
			ks.InfrastructureKeyVersion = v.WrappedVersion(ii.Wrapped)
		}
	}
	return ks
}

func (a *Account) kekVersioned() (keys.Versioned, bool) {
	kek, err := a.kek(context.Background(), a.set.Encryption)
	if err != nil {
		return nil, false
	}
	v, ok := kek.(keys.Versioned)
	return v, ok
}

// Status is everything the admin API reports about the account.
type Status struct {
	Settings Settings            `json:"settings"`
	Keys     KeyStatus           `json:"keys"`
	Copies   []redundancy.Health `json:"copies"`
	// SecondaryCopies are the secondary's copies (geo-redundant accounts).
	SecondaryCopies []redundancy.Health `json:"secondary_copies,omitempty"`
	GeoReplication  *GeoStatus          `json:"geo_replication,omitempty"`
	// InfrastructureConversion reports a running conversion.
	InfrastructureConversion *ConversionStatus `json:"infrastructure_conversion,omitempty"`
}

// ConversionStatus is the progress of turning infrastructure encryption on
// or off for an account with data.
type ConversionStatus struct {
	State     string `json:"state"`
	Converted int64  `json:"converted"`
	Remaining int64  `json:"remaining"`
	LastError string `json:"last_error,omitempty"`
}

// GeoStatus is the state of geo-replication.
type GeoStatus struct {
	// LastSyncTime (ms since the epoch): every change before it is in the
	// secondary. Absent during the initial sync.
	LastSyncTime       *int64 `json:"last_sync_time,omitempty"`
	LagMillis          *int64 `json:"lag_ms,omitempty"`
	Backlog            int    `json:"backlog"`
	Shipped            int64  `json:"shipped"`
	InitialSync        bool   `json:"initial_sync"`
	SecondaryAvailable bool   `json:"secondary_available"`
	LastError          string `json:"last_error,omitempty"`
	LastErrorTime      int64  `json:"last_error_time,omitempty"`
	ReadAccess         bool   `json:"read_access"`
	// Held is set while shipments are held: a disaster-recovery region
	// that does not lead ships nothing to its peer.
	Held bool `json:"held,omitempty"`
}

// Status reports settings, keys, copy health and geo-replication.
func (a *Account) Status() Status {
	a.mu.RLock()
	defer a.mu.RUnlock()
	st := a.current()
	s := Status{Settings: redact(a.set), Keys: a.keyStatusLocked(), Copies: st.primary.Health()}
	if st.secondary != nil {
		s.SecondaryCopies = st.secondary.Health()
	}
	if a.set.InfrastructureConversion != "" {
		a.conv.mu.Lock()
		s.InfrastructureConversion = &ConversionStatus{State: a.set.InfrastructureConversion, Converted: a.conv.converted,
			Remaining: a.conv.remaining, LastError: a.conv.lastError}
		a.conv.mu.Unlock()
	}
	if st.geo != nil {
		g := st.geo.Status()
		gs := &GeoStatus{Backlog: g.Backlog, Shipped: g.Shipped, InitialSync: g.InitialSync, SecondaryAvailable: g.SecondaryAvailable,
			LastError: g.LastError, ReadAccess: a.set.Redundancy.ReadAccess(), Held: g.Held}
		if !g.LastErrorAt.IsZero() {
			gs.LastErrorTime = g.LastErrorAt.UnixMilli()
		}
		if g.HasLastSyncTime {
			lst := g.LastSyncTime.UnixMilli()
			lag := max(time.Now().UnixMilli()-lst, 0)
			gs.LastSyncTime, gs.LagMillis = &lst, &lag
		}
		s.GeoReplication = gs
	}
	return s
}

// GeoStatus returns the raw geo-replication status (nil without geo).
func (a *Account) GeoStatus() *geo.Status {
	st := a.current()
	if st.geo == nil {
		return nil
	}
	g := st.geo.Status()
	return &g
}

// Scrub runs one scrubber pass over the primary's copies now.
func (a *Account) Scrub(ctx context.Context) (redundancy.ScrubReport, error) {
	return a.current().primary.Scrub(ctx)
}

// Primary is the primary copy set (tests and the benchmark look at it).
func (a *Account) Primary() *redundancy.Layer { return a.current().primary }

// Close closes the account's stack; Run must have returned (or never run).
func (a *Account) Close() error {
	a.loopMu.Lock()
	a.stopLoopsLocked()
	a.loopMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if st := a.current(); st != nil {
		st.close()
	}
	return nil
}
