package digest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/storage/local"
)

// sealed builds an account with two chained digests over two log files,
// the second file growing between them, and returns its root and key.
func sealed(t *testing.T) (string, *Key) {
	t.Helper()
	root := t.TempDir()
	acct, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key := NewKey(priv)
	ctx := context.Background()
	c := &Chain{Name: "s-1", Account: acct, Key: key, Period: time.Hour, StateFile: filepath.Join(t.TempDir(), "state")}
	t0 := time.Date(2026, 3, 1, 10, 5, 0, 0, time.UTC)
	write := func(name, data string, at time.Time) {
		if err := c.Touch(name, at); err != nil {
			t.Fatal(err)
		}
		if err := acct.Append(ctx, name, strings.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	write("insights-logs-jobs/a/PT1H.json", "{\"a\":1}\n", t0)
	write("insights-logs-jobs/b/PT1H.json", "{\"b\":1}\n", t0)
	if err := c.Seal(ctx, t0.Add(30*time.Minute)); err != nil { // not due: nothing written
		t.Fatal(err)
	}
	if err := c.Seal(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	write("insights-logs-jobs/b/PT1H.json", "{\"b\":2}\n", t0.Add(time.Hour))
	if err := c.Seal(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	return root, key
}

func digests(t *testing.T, root string) []string {
	var out []string
	fs.WalkDir(os.DirFS(root), Root+"s-1", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func TestVerifyNamesWhatIsMissingOrAltered(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, root string, key *Key) ed25519.PublicKey
		kind   string // expected problem kind, "" for none
		object string // substring of the problem's object
	}{
		{"untouched", func(*testing.T, string, *Key) ed25519.PublicKey { return nil }, "", ""},
		{"untouched with the region key", func(_ *testing.T, _ string, k *Key) ed25519.PublicKey { return k.Public() }, "", ""},
		{"log file deleted", func(t *testing.T, root string, _ *Key) ed25519.PublicKey {
			os.Remove(filepath.Join(root, "insights-logs-jobs/a/PT1H.json"))
			return nil
		}, "missing-file", "jobs/a/"},
		{"log file edited", func(t *testing.T, root string, _ *Key) ed25519.PublicKey {
			p := filepath.Join(root, "insights-logs-jobs/b/PT1H.json")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte(`"b":1`), []byte(`"b":7`), 1), 0o600)
			return nil
		}, "altered-file", "jobs/b/"},
		{"log file truncated", func(t *testing.T, root string, _ *Key) ed25519.PublicKey {
			os.Truncate(filepath.Join(root, "insights-logs-jobs/b/PT1H.json"), 8)
			return nil
		}, "altered-file", "jobs/b/"},
		{"first digest deleted", func(t *testing.T, root string, _ *Key) ed25519.PublicKey {
			os.Remove(filepath.Join(root, digests(t, root)[0]))
			return nil
		}, "missing-digest", "T110000Z"},
		{"digest edited", func(t *testing.T, root string, _ *Key) ed25519.PublicKey {
			p := filepath.Join(root, digests(t, root)[0])
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte(`"region":""`), []byte(`"region":"x"`), 1), 0o600)
			return nil
		}, "bad-signature", "T110000Z"},
		{"digests re-signed with another key", func(t *testing.T, root string, k *Key) ed25519.PublicKey {
			return ed25519.PublicKey(bytes.Repeat([]byte{1}, 32))
		}, "bad-signature", "T110000Z"},
		{"digest moved", func(t *testing.T, root string, _ *Key) ed25519.PublicKey {
			d := digests(t, root)
			os.Rename(filepath.Join(root, d[1]), filepath.Join(root, strings.Replace(d[1], "T120000Z", "T130000Z", 1)))
			return nil
		}, "bad-signature", "T130000Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root, key := sealed(t)
			pub := c.tamper(t, root, key)
			rep, err := Verify(os.DirFS(root), pub)
			if err != nil {
				t.Fatal(err)
			}
			if c.kind == "" {
				if !rep.OK() || len(rep.Chains) != 1 || rep.Chains[0].Digests != 2 || rep.Chains[0].Files != 2 {
					t.Errorf("report = %+v", rep)
				}
				return
			}
			for _, p := range rep.Problems {
				if p.Kind == c.kind && strings.Contains(p.Object, c.object) {
					return
				}
			}
			t.Errorf("problems %v lack %s of %s", rep.Problems, c.kind, c.object)
		})
	}
}

func TestChainLinksDigestsAndSealsEmptyPeriods(t *testing.T) {
	root, _ := sealed(t)
	d := digests(t, root)
	if len(d) != 2 || !strings.HasSuffix(d[0], "y=2026/m=03/d=01/20260301T110000Z.json") {
		t.Fatalf("digests = %v", d)
	}
	rep, _ := Verify(os.DirFS(root), nil)
	if rep.Chains[0].First != "2026-03-01T10:00:00Z" || rep.Chains[0].Last != "2026-03-01T12:00:00Z" {
		t.Errorf("chain = %+v", rep.Chains[0])
	}
}
