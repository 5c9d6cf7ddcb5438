// Package diagnostics is Azure Databricks' diagnostic settings for a Tandem
// region: which audit categories go to which destinations (the region's
// storage account, an event hub, the log analytics query store), the loops
// that deliver the audit journal to them, the query API over the store,
// and the metrics and status that tell an operator a destination is
// behind. Settings live in the metadata store (admin-only API, audited);
// delivery state (cursors, digest chains) lives in DATA_DIR/audit, because
// journal positions mean nothing in another region.
//
// A new workspace has one setting, "default", sending every category to
// the query store, so "who did what" can be answered from the first start.
package diagnostics

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/delivery"
	"github.com/tandemdata/tandem/internal/audit/destination/eventhub"
	"github.com/tandemdata/tandem/internal/audit/destination/loganalytics"
	"github.com/tandemdata/tandem/internal/audit/destination/storageaccount"
	"github.com/tandemdata/tandem/internal/audit/digest"
	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/store"
)

// Keyring gives the key that seals destination credentials.
type Keyring interface {
	KEK(name string) (keys.KEK, error)
}

// Config builds a Service.
type Config struct {
	Store   store.Store
	Journal *audit.Journal
	// Account is the region's storage account.
	Account storage.Backend
	Keys    Keyring
	// Dir is DATA_DIR/audit: the query store, cursors, digest state and
	// the digest key live there.
	Dir        string
	ResourceID string
	Region     string
	Registry   prometheus.Registerer
	Log        *slog.Logger
	// DigestPeriod is how often storage-account digests are sealed (1 h).
	DigestPeriod time.Duration
	// JournalRetention is the floor below which journal segments are kept
	// even once every destination has them (24 h).
	JournalRetention time.Duration
	// QueryRetention is how long the query store keeps records (365 d).
	QueryRetention time.Duration
	// CheckTimeout bounds the connection check of a new destination (5 s).
	CheckTimeout time.Duration
	// Tick is the delivery loops' idle wake-up (1 s).
	Tick time.Duration
}

// Service runs diagnostic settings.
type Service struct {
	cfg     Config
	log     *slog.Logger
	Query   *loganalytics.Store
	key     *digest.Key
	metrics *delivery.Metrics
	written *prometheus.CounterVec

	mu    sync.Mutex
	loops map[string]*running // by setting id + "/" + kind
	wg    sync.WaitGroup
}

type running struct {
	setting     string
	kind        string
	fingerprint string
	loop        *delivery.Loop
	cancel      context.CancelFunc
	done        chan struct{}
	close       func()
}

// New opens the query store and the digest key.
func New(cfg Config) (*Service, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.DigestPeriod <= 0 {
		cfg.DigestPeriod = time.Hour
	}
	if cfg.JournalRetention <= 0 {
		cfg.JournalRetention = 24 * time.Hour
	}
	if cfg.QueryRetention <= 0 {
		cfg.QueryRetention = 365 * 24 * time.Hour
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 5 * time.Second
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "delivery")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create audit directory: %w", err)
		}
	}
	s := &Service{cfg: cfg, log: cfg.Log, loops: map[string]*running{}}
	var err error
	if s.key, err = digest.LoadOrCreateKey(cfg.Dir); err != nil {
		return nil, err
	}
	if s.Query, err = loganalytics.Open(filepath.Join(cfg.Dir, "records.db")); err != nil {
		return nil, err
	}
	s.metrics = delivery.NewMetrics(cfg.Registry)
	s.written = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tandem", Subsystem: "audit",
		Name: "records_written_total", Help: "Audit records written to the journal, by category (other: categories outside the known list)."},
		[]string{"category"})
	cfg.Registry.MustRegister(s.written)
	return s, nil
}

// Close closes the query store; call it after Run has returned.
func (s *Service) Close() error { return s.Query.Close() }

// Auditor wraps the journal for the API middleware and the Emitter: it
// counts records by category as they are written.
func (s *Service) Auditor() audit.Appender { return recorder{s} }

type recorder struct{ s *Service }

func (r recorder) Append(ctx context.Context, rec *audit.Record) error {
	if err := r.s.cfg.Journal.Append(ctx, rec); err != nil {
		return err
	}
	label := "other"
	if c, ok := canonicalCategory(rec.Category); ok && c == rec.Category {
		label = c
	}
	r.s.written.WithLabelValues(label).Inc()
	return nil
}

// EnsureDefault creates the default setting on a workspace's first start.
// A passive region (read-only store) gets it through replication instead.
func (s *Service) EnsureDefault(ctx context.Context) error {
	_, err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		done, err := store.Exists(tx, kindInit, "default")
		if err != nil || done {
			return err
		}
		now := tx.Now().UnixMilli()
		def := Setting{Name: "default", ID: uuid.NewString(), CreatedTime: now, UpdatedTime: now,
			Logs: []LogSetting{{CategoryGroup: GroupAllLogs, Enabled: true}}, LogAnalytics: &LogAnalytics{}}
		if err := store.Put(tx, kindSetting, def.Name, def); err != nil {
			return err
		}
		return store.Put(tx, kindInit, "default", map[string]int64{"created_time": now})
	})
	if errors.Is(err, store.ErrReadOnly) {
		return nil
	}
	return err
}

// Run delivers until ctx ends: it starts a loop per destination, follows
// setting changes, and trims the journal and the query store.
func (s *Service) Run(ctx context.Context) {
	changes, stop := s.cfg.Store.Notify()
	defer stop()
	retention := time.NewTicker(time.Minute)
	defer retention.Stop()
	resync := time.NewTicker(30 * time.Second)
	defer resync.Stop()
	s.reconcile(ctx)
	s.trim(ctx)
	for {
		select {
		case <-ctx.Done():
			s.stopAll()
			return
		case <-changes:
			// Commits come in bursts; settings rarely change.
			time.Sleep(100 * time.Millisecond)
			s.reconcile(ctx)
		case <-resync.C:
			s.reconcile(ctx)
		case <-retention.C:
			s.trim(ctx)
		}
	}
}

func (s *Service) settings(ctx context.Context) ([]Setting, error) {
	var out []Setting
	err := s.cfg.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = store.List[Setting](tx, kindSetting, "")
		return err
	})
	return out, err
}

func loopKey(st Setting, kind string) string { return st.ID + "/" + kind }

func fingerprint(st Setting, kind string) string {
	b, _ := json.Marshal(struct {
		Logs []LogSetting
		Dest any
		C    int64
	}{st.Logs, map[string]any{KindStorageAccount: st.StorageAccount, KindEventHub: st.EventHub, KindLogAnalytics: st.LogAnalytics}[kind], st.CreatedTime})
	return string(b)
}

func (s *Service) reconcile(ctx context.Context) {
	settings, err := s.settings(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("read diagnostic settings", "err", err)
		}
		return
	}
	want := map[string]Setting{}
	for _, st := range settings {
		for _, kind := range st.Kinds() {
			want[loopKey(st, kind)] = st
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, r := range s.loops {
		st, ok := want[key]
		if ok && fingerprint(st, r.kind) == r.fingerprint {
			continue
		}
		r.stop()
		delete(s.loops, key)
		if !ok {
			s.metrics.Forget(r.setting, r.kind)
			// The destination is gone: so is its delivery state.
			os.Remove(s.cursorFile(key))
			os.Remove(s.digestState(key))
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if _, ok := s.loops[key]; ok || ctx.Err() != nil {
			continue
		}
		st := want[key]
		kind := key[len(st.ID)+1:]
		r, err := s.start(ctx, st, kind)
		if err != nil {
			s.log.Error("audit destination not started", "setting", st.Name, "destination", kind, "err", err)
			continue
		}
		s.loops[key] = r
	}
}

func (s *Service) cursorFile(key string) string {
	return filepath.Join(s.cfg.Dir, "delivery", safe(key)+".cursor")
}

func (s *Service) digestState(key string) string {
	return filepath.Join(s.cfg.Dir, "delivery", safe(key)+".digest")
}

func safe(key string) string {
	b := []byte(key)
	for i, c := range b {
		if c == '/' {
			b[i] = '.'
		}
	}
	return string(b)
}

// ChainName is the digest chain folder of a setting's storage destination.
func ChainName(st Setting) string {
	id := st.ID
	if len(id) > 8 {
		id = id[:8]
	}
	return st.Name + "-" + id
}

func (s *Service) start(ctx context.Context, st Setting, kind string) (*running, error) {
	key := loopKey(st, kind)
	r := &running{setting: st.Name, kind: kind, fingerprint: fingerprint(st, kind), close: func() {}}
	var dest delivery.Destination
	switch kind {
	case KindLogAnalytics:
		dest = s.Query
	case KindStorageAccount:
		dest = &storageaccount.Destination{Account: s.cfg.Account, ResourceID: s.cfg.ResourceID, Chain: &digest.Chain{
			Name: ChainName(st), Account: s.cfg.Account, Key: s.key, ResourceID: s.cfg.ResourceID, Region: s.cfg.Region,
			Period: s.cfg.DigestPeriod, StateFile: s.digestState(key)}}
	case KindEventHub:
		cs, err := s.unseal(ctx, st.EventHub.Sealed)
		if err != nil {
			return nil, err
		}
		eh, err := eventhub.New(st.EventHub.config(cs))
		if err != nil {
			return nil, err
		}
		dest, r.close = eh, eh.Close
	}
	sel := Select(st.Logs)
	created := time.UnixMilli(st.CreatedTime).UTC().Format(audit.TimeFormat)
	r.loop = &delivery.Loop{
		ID: st.Name + "/" + kind, Setting: st.Name, Kind: kind, Journal: s.cfg.Journal, Dest: dest,
		// A destination receives what happened after its setting was made.
		Accept:     func(rec *audit.Record) bool { return sel.Has(rec.Category) && rec.Time >= created },
		CursorFile: s.cursorFile(key), Metrics: s.metrics, Tick: s.cfg.Tick,
		Log: s.log.With("component", "audit-delivery"),
	}
	if err := r.loop.Init(); err != nil {
		r.close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(ctx)
	r.cancel, r.done = cancel, make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		r.loop.Run(lctx)
	}()
	return r, nil
}

func (r *running) stop() {
	r.cancel()
	<-r.done
	r.close()
}

func (s *Service) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, r := range s.loops {
		r.stop()
		delete(s.loops, key)
	}
	s.wg.Wait()
}

// status returns the delivery status of a setting's destinations.
func (s *Service) status(st Setting) map[string]delivery.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]delivery.Status{}
	for _, kind := range st.Kinds() {
		if r, ok := s.loops[loopKey(st, kind)]; ok {
			out[kind] = r.loop.Status()
		}
	}
	return out
}

// trim removes journal segments every destination has delivered (keeping
// the retention floor) and query-store records past their retention.
func (s *Service) trim(ctx context.Context) {
	settings, err := s.settings(ctx)
	if err != nil {
		return
	}
	end := s.cfg.Journal.End()
	oldest := end
	for _, st := range settings {
		for _, kind := range st.Kinds() {
			// The cursor file, not the running loop: a destination that
			// could not start still needs its records.
			pos, err := delivery.LoadCursor(s.cursorFile(loopKey(st, kind)))
			if err != nil {
				return
			}
			if pos.Less(oldest) {
				oldest = pos
			}
		}
	}
	segs, err := s.cfg.Journal.Segments()
	if err != nil {
		return
	}
	floor := time.Now().Add(-s.cfg.JournalRetention)
	for _, seg := range segs {
		if seg >= oldest.Segment || oldest.Segment == 0 || seg >= end.Segment {
			break
		}
		mod, err := s.cfg.Journal.SegmentModTime(seg)
		if err != nil || mod.After(floor) {
			break
		}
		if err := s.cfg.Journal.RemoveSegment(seg); err != nil {
			s.log.Warn("audit journal segment not removed", "segment", seg, "err", err)
			break
		}
		s.log.Info("removed delivered audit journal segment", "segment", seg)
	}
	if n, err := s.Query.Prune(ctx, time.Now().Add(-s.cfg.QueryRetention)); err == nil && n > 0 {
		s.log.Info("pruned audit records past retention", "records", n)
	}
}

// sealedSecret is a credential encrypted with a data key that the region's
// keyring wraps.
type sealedSecret struct {
	Key  []byte `json:"key"`
	Data []byte `json:"data"`
}

const credentialKEK = "audit-destinations"

func (s *Service) seal(ctx context.Context, secret string) ([]byte, error) {
	if secret == "" {
		return nil, nil
	}
	kek, err := s.cfg.Keys.KEK(credentialKEK)
	if err != nil {
		return nil, err
	}
	dek := keys.NewDEK()
	wrapped, err := kek.Wrap(ctx, dek)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(dek)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return json.Marshal(sealedSecret{Key: wrapped, Data: gcm.Seal(nonce, nonce, []byte(secret), []byte("audit destination credential"))})
}

func (s *Service) unseal(ctx context.Context, sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	var ss sealedSecret
	if err := json.Unmarshal(sealed, &ss); err != nil {
		return "", fmt.Errorf("sealed credential is damaged: %w", err)
	}
	kek, err := s.cfg.Keys.KEK(credentialKEK)
	if err != nil {
		return "", err
	}
	dek, err := kek.Unwrap(ctx, ss.Key)
	if err != nil {
		return "", fmt.Errorf("unseal event hub credential: %w", err)
	}
	block, err := aes.NewCipher(dek)
	if err != nil {
		return "", err
	}
	gcm, _ := cipher.NewGCM(block)
	if len(ss.Data) < gcm.NonceSize() {
		return "", errors.New("sealed credential is damaged")
	}
	plain, err := gcm.Open(nil, ss.Data[:gcm.NonceSize()], ss.Data[gcm.NonceSize():], []byte("audit destination credential"))
	if err != nil {
		return "", errors.New("sealed credential does not open with the region's key")
	}
	return string(plain), nil
}

// ResourceIDForTest is the resource id records carry.
func (s *Service) ResourceIDForTest() string { return s.cfg.ResourceID }
