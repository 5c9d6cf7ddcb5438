package account

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/keys"
	"github.com/tandemdata/tandem/internal/keys/transittest"
	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/azureblob"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/storage/redundancy"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
	"github.com/tandemdata/tandem/internal/store/sqlstore"
	"github.com/tandemdata/tandem/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var bg = context.Background()

type fixture struct {
	dir  string
	opts Options
	acc  *Account
	ring *keys.Keyring
	stop context.CancelFunc
	done chan struct{}
}

func newFixture(t *testing.T, defaults Settings, mod ...func(*Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(bg, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ring, err := keys.OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, ring: ring, opts: Options{Name: "root", Dir: filepath.Join(dir, "storage"), Store: st, Keys: ring,
		Defaults: defaults, Probe: 20 * time.Millisecond, GeoMinBackoff: 5 * time.Millisecond, GeoMaxBackoff: 50 * time.Millisecond}}
	for _, m := range mod {
		m(&f.opts)
	}
	f.open(t)
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	acc, err := Open(bg, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.acc = acc
	ctx, cancel := context.WithCancel(bg)
	f.stop, f.done = cancel, make(chan struct{})
	go func() { defer close(f.done); acc.Run(ctx) }()
	t.Cleanup(f.close)
}

func (f *fixture) close() {
	if f.stop != nil {
		f.stop()
		<-f.done
		f.stop = nil
		f.acc.Close()
	}
}

func (f *fixture) waitSynced(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		g := f.acc.GeoStatus()
		if g != nil && g.Backlog == 0 && !g.InitialSync {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("geo-replication did not catch up: %+v", g)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) update(t *testing.T, mod func(*Settings)) Settings {
	t.Helper()
	s := f.acc.Settings()
	mod(&s)
	out, err := f.acc.Update(bg, s, "admin@tandem.local")
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	return out
}

func TestAccountBehaviour(t *testing.T) {
	for _, c := range []struct {
		name string
		set  Settings
	}{
		{"LRS", Settings{}},
		{"ZRS", Settings{Redundancy: ZRS}},
		{"RA-GZRS with double encryption", Settings{Redundancy: RAGZRS, Encryption: Encryption{KeySource: KeySourcePlatform, InfrastructureEncryption: true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Backend { return newFixture(t, c.set).acc }, storagetest.Options{LargeSize: 3<<20 + 5})
		})
	}
}

// grep reports the files under dir that contain marker.
func grep(t *testing.T, dir string, marker []byte) (hits []string, files int) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		files++
		if bytes.Contains(b, marker) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits, files
}

func TestNoPlaintextReachesAnyCopy(t *testing.T) {
	f := newFixture(t, Settings{Redundancy: GZRS, Encryption: Encryption{KeySource: KeySourcePlatform, InfrastructureEncryption: true}})
	marker := []byte("PLAINTEXT-MARKER-f00d-" + fmt.Sprint(time.Now().UnixNano()))
	data := bytes.Repeat(append(marker, '\n'), 40000)
	storagetest.Put(t, f.acc, "dbfs/marker.txt", data)
	storagetest.Put(t, f.acc, "dbfs/small.txt", marker)
	f.waitSynced(t)
	if got := storagetest.Read(t, f.acc, "dbfs/marker.txt", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("round trip differs")
	}
	hits, files := grep(t, f.dir, marker)
	if len(hits) > 0 {
		t.Fatalf("plaintext found in %v", hits)
	}
	if files < 12 {
		t.Fatalf("searched only %d files: the copies are not where the test looks", files)
	}
}

var containers atomic.Int64

func azureCopies(t *testing.T) CopiesFunc {
	az := testenv.Azurite(t)
	return AzureCopies(azureblob.Config{ServiceURL: az.URL, Account: az.Account, Key: az.Key, BlockSize: 1 << 20},
		fmt.Sprintf("acct%d", containers.Add(1)))
}

func TestNoPlaintextReachesAzurite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return newFixture(t, Settings{Redundancy: GRS}, func(o *Options) { o.Copies = azureCopies(t) }).acc
	}, storagetest.Options{LargeSize: 2 << 20, Writers: 3})
	f := newFixture(t, Settings{Redundancy: GRS}, func(o *Options) { o.Copies = azureCopies(t) })
	marker := []byte("AZURITE-PLAINTEXT-MARKER-" + fmt.Sprint(time.Now().UnixNano()))
	storagetest.Put(t, f.acc, "logs/marker", bytes.Repeat(marker, 1000))
	f.waitSynced(t)
	hits, files := grep(t, testenv.Azurite(t).Dir, marker)
	if len(hits) > 0 {
		t.Fatalf("plaintext found in Azurite's storage: %v", hits)
	}
	if files == 0 {
		t.Fatal("Azurite's location holds no file")
	}
}

func TestConvertingBetweenLRSAndZRSKeepsEveryObject(t *testing.T) {
	f := newFixture(t, Settings{})
	want := map[string][]byte{}
	for i := 0; i < 10; i++ {
		n := fmt.Sprintf("w/%d", i)
		want[n] = storagetest.Random(1000 * (i + 1))
		storagetest.Put(t, f.acc, n, want[n])
	}
	for _, r := range []Redundancy{ZRS, LRS, GZRS} {
		f.update(t, func(s *Settings) { s.Redundancy = r })
		for n, d := range want {
			if got := storagetest.Read(t, f.acc, n, 0, -1); !bytes.Equal(got, d) {
				t.Fatalf("%s lost %s", r, n)
			}
		}
		names := []string{}
		for _, h := range f.acc.Status().Copies {
			names = append(names, h.Name)
		}
		if wantZones := r.Zoned(); wantZones != strings.HasPrefix(names[0], "zone-") {
			t.Fatalf("%s copies are %v", r, names)
		}
	}
	// Settings and data survive a restart.
	f.close()
	f.open(t)
	if s := f.acc.Settings(); s.Redundancy != GZRS {
		t.Fatalf("after restart redundancy = %s", s.Redundancy)
	}
	if got := storagetest.Read(t, f.acc, "w/3", 0, -1); !bytes.Equal(got, want["w/3"]) {
		t.Fatal("data lost across restart")
	}
}

func TestGeoRedundantAccountFailsOverAndBack(t *testing.T) {
	f := newFixture(t, Settings{})
	storagetest.Put(t, f.acc, "before-geo", []byte("old"))
	f.update(t, func(s *Settings) { s.Redundancy = RAGRS })
	f.waitSynced(t)
	st := f.acc.Status()
	if st.GeoReplication == nil || st.GeoReplication.LastSyncTime == nil || !st.GeoReplication.ReadAccess {
		t.Fatalf("geo status = %+v", st.GeoReplication)
	}
	storagetest.Put(t, f.acc, "a", []byte("replicated"))
	f.waitSynced(t)
	// The secondary endpoint serves reads and refuses writes.
	if got := storagetest.Read(t, f.acc.Secondary(), "a", 0, -1); string(got) != "replicated" {
		t.Fatalf("secondary endpoint read %q", got)
	}
	if err := f.acc.Secondary().Put(bg, "x", strings.NewReader("x")); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("write to the secondary endpoint = %v", err)
	}
	set, err := f.acc.Failover(bg, Unplanned, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if set.Redundancy != LRS || set.Site != second || set.FailoverLastSyncTime == 0 {
		t.Fatalf("after failover: %+v", set)
	}
	for n, want := range map[string]string{"a": "replicated", "before-geo": "old"} {
		if got := storagetest.Read(t, f.acc, n, 0, -1); string(got) != want {
			t.Fatalf("after failover %s = %q", n, got)
		}
	}
	storagetest.Put(t, f.acc, "b", []byte("written in the secondary"))
	if _, err := f.acc.Failover(bg, Unplanned, "admin"); err == nil {
		t.Fatal("a locally redundant account failed over")
	}
	if _, err := f.acc.Update(bg, withRedundancy(f.acc.Settings(), GZRS), "admin"); err == nil {
		t.Fatal("the secondary took zones")
	}
	// Geo-redundancy back on: the old primary becomes the secondary.
	f.update(t, func(s *Settings) { s.Redundancy = GRS })
	f.waitSynced(t)
	if _, err := f.acc.Failover(bg, Planned, "admin"); err != nil {
		t.Fatal(err)
	}
	if s := f.acc.Settings(); s.Site != primary || s.Redundancy != LRS {
		t.Fatalf("after failback: %+v", s)
	}
	for n, want := range map[string]string{"a": "replicated", "b": "written in the secondary"} {
		if got := storagetest.Read(t, f.acc, n, 0, -1); string(got) != want {
			t.Fatalf("after failback %s = %q", n, got)
		}
	}
}

func withRedundancy(s Settings, r Redundancy) Settings {
	s.Redundancy = r
	return s
}

func TestUnplannedFailoverLosesOnlyWhatWasNotShipped(t *testing.T) {
	f := newFixture(t, Settings{Redundancy: GRS}, func(o *Options) {
		base := dirCopies(o.Dir, o.Zones)
		o.Copies = func(ctx context.Context, site string, zoned bool) ([]redundancy.Copy, error) {
			cs, err := base(ctx, site, zoned)
			if site == second {
				for i := range cs {
					cs[i].Backend = &gate{Backend: cs[i].Backend}
				}
			}
			return cs, err
		}
	})
	storagetest.Put(t, f.acc, "shipped", []byte("1"))
	f.waitSynced(t)
	for _, c := range f.acc.current().secondary.Copies() {
		c.Backend.(*gate).closed.Store(true)
	}
	storagetest.Put(t, f.acc, "stuck", []byte("2"))
	time.Sleep(50 * time.Millisecond)
	g := f.acc.Status().GeoReplication
	if g.Backlog == 0 || g.SecondaryAvailable || g.LastError == "" {
		t.Fatalf("geo status with the secondary cut off: %+v", g)
	}
	for _, c := range f.acc.current().secondary.Copies() {
		c.Backend.(*gate).closed.Store(false)
	}
	set, err := f.acc.Failover(bg, Unplanned, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if set.FailoverLastSyncTime == 0 {
		t.Fatal("no last sync time recorded")
	}
	if got := storagetest.Read(t, f.acc, "shipped", 0, -1); string(got) != "1" {
		t.Fatalf("shipped object = %q", got)
	}
}

// gate is a backend whose writes can be refused (a network cut).
type gate struct {
	storage.Backend
	closed atomic.Bool
}

func (g *gate) Put(ctx context.Context, n string, r io.Reader) error {
	if g.closed.Load() {
		return errors.New("network unreachable")
	}
	return g.Backend.Put(ctx, n, r)
}

func TestInfrastructureEncryptionOnAnEmptyAccountIsImmediate(t *testing.T) {
	f := newFixture(t, Settings{})
	f.update(t, func(s *Settings) { s.Encryption.InfrastructureEncryption = true })
	st := f.acc.Status()
	if !st.Keys.InfrastructureEncryption || st.InfrastructureConversion != nil {
		t.Fatalf("status: %+v", st)
	}
	storagetest.Put(t, f.acc, "x", []byte("data"))
	if got := storagetest.Read(t, f.acc, "x", 0, -1); string(got) != "data" {
		t.Fatalf("read %q", got)
	}
}

// formats returns how many caller objects below the encryption are in the
// infrastructure layer's format and how many are not.
func formats(t *testing.T, f *fixture) (infra, plain int) {
	t.Helper()
	f.acc.mu.RLock()
	st := f.acc.current()
	f.acc.mu.RUnlock()
	err := st.below().List(bg, "", func(oi storage.ObjectInfo) error {
		if strings.HasPrefix(oi.Name, storage.ReservedPrefix) {
			return nil
		}
		r, err := st.below().Get(bg, oi.Name, 0, 5)
		if err != nil {
			return err
		}
		h, _ := io.ReadAll(r)
		r.Close()
		if len(h) == 5 && string(h[:4]) == "TSE1" && h[4] == 2 {
			infra++
		} else {
			plain++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return infra, plain
}

func (f *fixture) waitConversion(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for f.acc.Status().InfrastructureConversion != nil {
		if time.Now().After(deadline) {
			t.Fatalf("conversion not done: %+v", f.acc.Status().InfrastructureConversion)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInfrastructureEncryptionIsSwitchableWithData turns double encryption
// on and off for an account holding data: the objects are converted in the
// background while reads and writes go on, a restart resumes a conversion,
// and nothing is lost.
func TestInfrastructureEncryptionIsSwitchableWithData(t *testing.T) {
	f := newFixture(t, Settings{Redundancy: GRS})
	want := map[string][]byte{}
	for i := 0; i < 30; i++ {
		n := fmt.Sprintf("dbfs/%d", i)
		want[n] = storagetest.Random(20000 + i*3000)
		storagetest.Put(t, f.acc, n, want[n])
	}
	check := func(when string) {
		t.Helper()
		for n, d := range want {
			if got := storagetest.Read(t, f.acc, n, 0, -1); !bytes.Equal(got, d) {
				t.Fatalf("%s: %s differs", when, n)
			}
			if oi, err := f.acc.Stat(bg, n); err != nil || oi.Size != int64(len(d)) {
				t.Fatalf("%s: stat %s = %+v %v", when, n, oi, err)
			}
		}
	}
	// Turn it on with the loops stopped, as if the server died at once:
	// the settings say ENABLING and a restart resumes the conversion.
	f.close()
	f.open(t)
	f.stop()
	<-f.done
	f.stop = nil
	set := f.acc.Settings()
	set.Encryption.InfrastructureEncryption = true
	if _, err := f.acc.Update(bg, set, "admin"); err != nil {
		t.Fatal(err)
	}
	if s := f.acc.Settings(); s.InfrastructureConversion != Enabling {
		t.Fatalf("conversion state %q", s.InfrastructureConversion)
	}
	want["during"] = []byte("written while converting")
	storagetest.Put(t, f.acc, "during", want["during"])
	check("mid-conversion")
	if _, err := f.acc.Update(bg, withInfra(f.acc.Settings(), false), "admin"); err == nil {
		t.Fatal("a second change during a conversion was taken")
	}
	f.acc.Close()
	f.open(t)
	f.waitConversion(t)
	if infra, plain := formats(t, f); plain != 0 || infra != len(want) {
		t.Fatalf("after enabling: %d objects with the infrastructure layer, %d without", infra, plain)
	}
	if !f.acc.Status().Keys.InfrastructureEncryption {
		t.Fatal("status does not show infrastructure encryption")
	}
	check("after enabling")
	f.waitSynced(t)

	f.update(t, func(s *Settings) { s.Encryption.InfrastructureEncryption = false })
	f.waitConversion(t)
	if infra, plain := formats(t, f); infra != 0 || plain != len(want) {
		t.Fatalf("after disabling: %d objects with the infrastructure layer, %d without", infra, plain)
	}
	check("after disabling")
	if ks := f.acc.Status().Keys; ks.InfrastructureEncryption {
		t.Fatalf("keys after disabling: %+v", ks)
	}
}

func withInfra(s Settings, on bool) Settings {
	s.Encryption.InfrastructureEncryption = on
	return s
}

func TestPlatformKeyRotationAndRevocation(t *testing.T) {
	f := newFixture(t, Settings{})
	storagetest.Put(t, f.acc, "x", []byte("data"))
	before := f.acc.Status().Keys
	after, err := f.acc.RotateKey(bg)
	if err != nil {
		t.Fatal(err)
	}
	if before.KeyVersion != "1" || after.KeyVersion != "2" || after.KeyID != "platform/root" {
		t.Fatalf("rotation: %+v -> %+v", before, after)
	}
	f.ring.SetDisabled("root", true)
	if _, err := f.acc.Get(bg, "x", 0, -1); !errors.Is(err, keys.ErrKeyDisabled) || !strings.Contains(err.Error(), "platform/root") {
		t.Fatalf("read with the key disabled = %v", err)
	}
	f.ring.SetDisabled("root", false)
	if got := storagetest.Read(t, f.acc, "x", 0, -1); string(got) != "data" {
		t.Fatalf("read %q", got)
	}
}

func kvClient(t *testing.T, kv *testenv.KeyVaultServer) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(kv.CAPEM(t)))
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func kvCall(t *testing.T, kv *testenv.KeyVaultServer, method, path string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, kv.URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+kv.Token)
	resp, err := kvClient(t, kv).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s = %d %v", method, path, resp.StatusCode, out)
	}
	return out
}

// TestCustomerManagedKeyInTheKeyVault runs the real tandem keyvault
// process: switching to the CMK keeps the data, disabling the key makes
// every read and write fail closed naming the key, enabling it restores
// access, and rotation re-wraps without rewriting data.
func TestCustomerManagedKeyInTheKeyVault(t *testing.T) {
	kv := testenv.KeyVault(t)
	kvCall(t, kv, "POST", "/keys/tandem-cmk/create", map[string]any{"kty": "oct-HSM", "key_size": 256})
	f := newFixture(t, Settings{Encryption: Encryption{KeySource: KeySourcePlatform, InfrastructureEncryption: true}})
	data := storagetest.Random(300000)
	storagetest.Put(t, f.acc, "dbfs/a", data)
	f.update(t, func(s *Settings) {
		s.Encryption.KeySource = KeySourceKeyVault
		s.Encryption.KeyVault = &VaultKey{URL: kv.URL, KeyName: "tandem-cmk", CAPEM: kv.CAPEM(t), Token: kv.Token}
	})
	st := f.acc.Status()
	if st.Keys.KeyID != kv.URL+"/keys/tandem-cmk" || st.Keys.KeyVersion == "" {
		t.Fatalf("keys after the switch: %+v", st.Keys)
	}
	if st.Settings.Encryption.KeyVault.Token != "" || st.Settings.Encryption.KeyVault.SealedToken != nil {
		t.Fatal("the vault token is in the settings returned")
	}
	raw, _ := os.ReadFile(filepath.Join(f.dir, "meta.db"))
	if bytes.Contains(raw, []byte(kv.Token)) {
		t.Fatal("the vault token is stored in clear")
	}
	if got := storagetest.Read(t, f.acc, "dbfs/a", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("data unreadable after the switch to the CMK")
	}
	// The platform key no longer matters.
	f.ring.SetDisabled("root", true)
	storagetest.Read(t, f.acc, "dbfs/a", 100, 100)

	kvCall(t, kv, "PATCH", "/keys/tandem-cmk", map[string]any{"attributes": map[string]any{"enabled": false}})
	denied := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, keys.ErrKeyDisabled) || !strings.Contains(err.Error(), kv.URL+"/keys/tandem-cmk") {
			t.Errorf("%s with the CMK disabled = %v", what, err)
		}
	}
	_, err := f.acc.Get(bg, "dbfs/a", 0, -1)
	denied("get", err)
	_, err = f.acc.Get(bg, "dbfs/a", 5000, 10)
	denied("ranged get", err)
	_, err = f.acc.Stat(bg, "dbfs/a")
	denied("stat", err)
	denied("put", f.acc.Put(bg, "dbfs/b", strings.NewReader("x")))
	kvCall(t, kv, "PATCH", "/keys/tandem-cmk", map[string]any{"attributes": map[string]any{"enabled": true}})
	if got := storagetest.Read(t, f.acc, "dbfs/a", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("data not back after re-enabling the CMK")
	}
	storagetest.Put(t, f.acc, "dbfs/b", []byte("after"))

	// Rotation in the vault, then rotate-key: the newest version wraps the
	// account key and the old version can be disabled.
	old := f.acc.Status().Keys.KeyVersion
	files := snapshot(t, f.opts.Dir)
	out := kvCall(t, kv, "POST", "/keys/tandem-cmk/rotate", nil)
	kid := out["key"].(map[string]any)["kid"].(string)
	ks, err := f.acc.RotateKey(bg)
	if err != nil {
		t.Fatal(err)
	}
	if ks.KeyVersion == old || !strings.HasSuffix(kid, "/"+ks.KeyVersion) {
		t.Fatalf("after rotation version %s (was %s, newest %s)", ks.KeyVersion, old, kid)
	}
	kvCall(t, kv, "PATCH", "/keys/tandem-cmk/"+old, map[string]any{"attributes": map[string]any{"enabled": false}})
	if got := storagetest.Read(t, f.acc, "dbfs/a", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("data unreadable after rotation")
	}
	if changed := changedFiles(t, f.opts.Dir, files); len(changed) != 3 || !strings.Contains(changed[0], "keys") {
		t.Fatalf("rotation rewrote %v; want only the three copies of the key record", changed)
	}
	// A restart opens the account with the sealed token.
	f.close()
	f.open(t)
	if got := storagetest.Read(t, f.acc, "dbfs/b", 0, -1); string(got) != "after" {
		t.Fatalf("after restart: %q", got)
	}
}

func snapshot(t *testing.T, dir string) map[string]time.Time {
	out := map[string]time.Time{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			out[p] = fi.ModTime()
		}
		return nil
	})
	return out
}

func changedFiles(t *testing.T, dir string, before map[string]time.Time) []string {
	var out []string
	for p, m := range snapshot(t, dir) {
		if strings.HasSuffix(p, ".json") {
			continue // copy health
		}
		if old, ok := before[p]; !ok || !old.Equal(m) {
			out = append(out, p)
		}
	}
	return out
}

// TestCustomerManagedKeyInVaultTransit uses transittest, an in-process
// stand-in for Vault's Transit engine (no Vault server can be installed on
// this machine).
func TestCustomerManagedKeyInVaultTransit(t *testing.T) {
	tr := transittest.Start("s.token")
	defer tr.Close()
	caPEM := pemOf(tr.Certificate().Raw)
	f := newFixture(t, Settings{})
	storagetest.Put(t, f.acc, "x", []byte("data"))
	f.update(t, func(s *Settings) {
		s.Encryption.KeySource = KeySourceTransit
		s.Encryption.Transit = &VaultKey{URL: tr.URL, KeyName: "storage", CAPEM: caPEM, Token: "s.token"}
	})
	if ks := f.acc.Status().Keys; ks.KeyVersion != "1" || !strings.HasSuffix(ks.KeyID, "/v1/transit/keys/storage") {
		t.Fatalf("keys: %+v", ks)
	}
	tr.Rotate("storage")
	if ks, err := f.acc.RotateKey(bg); err != nil || ks.KeyVersion != "2" {
		t.Fatalf("rotate: %+v %v", ks, err)
	}
	// Revoking version 1 does not matter after the re-wrap; revoking 2 does.
	tr.SetMinDecryptionVersion("storage", 2)
	if got := storagetest.Read(t, f.acc, "x", 0, -1); string(got) != "data" {
		t.Fatalf("read %q", got)
	}
	tr.Rotate("storage")
	tr.SetMinDecryptionVersion("storage", 3)
	if _, err := f.acc.Get(bg, "x", 0, -1); !errors.Is(err, keys.ErrKeyDisabled) {
		t.Fatalf("read with the version revoked = %v", err)
	}
}

func pemOf(der []byte) string {
	return "-----BEGIN CERTIFICATE-----\n" + wrap64(der) + "-----END CERTIFICATE-----\n"
}

func wrap64(der []byte) string {
	s := base64Std(der)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

func TestCrashMidKeySwitchOpensWithTheConfiguredKey(t *testing.T) {
	f := newFixture(t, Settings{})
	storagetest.Put(t, f.acc, "x", []byte("data"))
	// A second wrap, as a switch that crashed before committing leaves.
	other, _ := f.ring.KEK("other")
	if err := f.acc.current().svc.AddWrap(bg, other); err != nil {
		t.Fatal(err)
	}
	f.close()
	f.open(t)
	if w := f.acc.current().svc.Wraps(); len(w) != 1 || w[0] != "platform/root" {
		t.Fatalf("wraps after reopening: %v", w)
	}
	if got := storagetest.Read(t, f.acc, "x", 0, -1); string(got) != "data" {
		t.Fatalf("read %q", got)
	}
}

func TestReservedNamesAreRefused(t *testing.T) {
	f := newFixture(t, Settings{})
	if err := f.acc.Put(bg, storage.ReservedPrefix+"keys/service", strings.NewReader("x")); !errors.Is(err, storage.ErrInvalidName) {
		t.Fatalf("put reserved = %v", err)
	}
	f.acc.List(bg, "", func(oi storage.ObjectInfo) error {
		t.Errorf("listing shows %s", oi.Name)
		return nil
	})
}

// TestSecondaryRegionAccountIsPluggable ships to a secondary given as a
// plain storage.Backend (as disaster recovery plugs the peer region in).
func TestSecondaryRegionAccountIsPluggable(t *testing.T) {
	remoteDir := t.TempDir()
	var remote storage.Backend
	f := newFixture(t, Settings{Redundancy: GRS}, func(o *Options) {
		o.Secondary = func(context.Context) (storage.Backend, error) {
			b, err := local.New(remoteDir)
			remote = b
			return b, err
		}
	})
	storagetest.Put(t, f.acc, "dbfs/x", []byte("to the other region"))
	f.waitSynced(t)
	n := 0
	remote.List(bg, "dbfs/", func(storage.ObjectInfo) error { n++; return nil })
	if n != 1 {
		t.Fatalf("the secondary region holds %d objects", n)
	}
	if hits, _ := grep(t, remoteDir, []byte("to the other region")); len(hits) > 0 {
		t.Fatalf("plaintext shipped: %v", hits)
	}
	var inv *InvalidError
	if _, err := f.acc.Failover(bg, Unplanned, "admin"); !errors.As(err, &inv) {
		t.Fatalf("failover to a remote secondary = %v", err)
	}
}

// namingSecondary is a secondary region's account that, like disaster
// recovery's, asks the sending account for its key id on every shipment;
// its first shipment waits at the door until the test opens it.
type namingSecondary struct {
	storage.Backend
	acc     func() *Account
	arrived chan struct{}
	door    chan struct{}
	once    sync.Once
}

func (n *namingSecondary) Put(ctx context.Context, name string, r io.Reader) error {
	n.once.Do(func() {
		close(n.arrived)
		<-n.door
	})
	if n.acc().KeyID() == "" {
		return errors.New("no account key id")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return n.Backend.Put(ctx, name, r)
}

// A reconfiguration stops the account's loops while it holds the account
// still; a shipment in flight that names the account key must not wait for
// it (it did: a promoted region's Reload and the shipper waited on each
// other for ever).
func TestReloadDoesNotWaitForAShipmentThatNamesTheAccountKey(t *testing.T) {
	var f *fixture
	sec := &namingSecondary{acc: func() *Account { return f.acc }, arrived: make(chan struct{}), door: make(chan struct{})}
	f = newFixture(t, Settings{Redundancy: GRS}, func(o *Options) {
		o.Secondary = func(context.Context) (storage.Backend, error) {
			b, err := local.New(filepath.Join(t.TempDir(), "remote"))
			sec.Backend = b
			return sec, err
		}
	})
	storagetest.Put(t, f.acc, "dbfs/x", []byte("shipped"))
	select {
	case <-sec.arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("nothing was shipped")
	}
	reloaded := make(chan error, 1)
	go func() { reloaded <- f.acc.Reload(bg) }()
	time.Sleep(200 * time.Millisecond) // Reload holds the account and stops the loops
	close(sec.door)
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Reload and the shipment wait on each other")
	}
	f.waitSynced(t)
}
