package account

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
)

func TestMergePlan(t *testing.T) {
	const k = 1 << 10
	rep := func(n int, size int64, level int) []part {
		out := make([]part, n)
		for i := range out {
			out[i] = part{Size: size, Level: level}
		}
		return out
	}
	cat := func(ps ...[]part) []part {
		var out []part
		for _, p := range ps {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name  string
		parts []part
		want  int
	}{
		{"too few parts", rep(mergeFanout-1, k, 0), -1},
		{"fanout parts of one level", rep(mergeFanout, k, 0), 0},
		{"sizes do not matter, levels do", cat(rep(1, 70*k, 0), rep(mergeFanout-1, k, 0)), 0},
		{"only the tail", cat(rep(1, 1<<20, 1), rep(mergeFanout, k, 0)), 1},
		{"levels differ", cat(rep(1, k, 1), rep(mergeFanout-1, k, 0)), -1},
		{"a higher level", cat(rep(3, k, 0), rep(mergeFanout, 1<<20, 1)), 3},
		{"as many as fit in a merged part", rep(mergeFanout, 3<<20, 0), mergeFanout - 10},
		{"fewer than fanout, not at the cap", cat(rep(1, 1<<20, 1), rep(5, 3<<20, 0)), -1},
		{"at least two", rep(3, 20<<20, 0), -1},
		{"two that fit", rep(3, 12<<20, 0), 1},
		{"a converted big part is never rewritten", cat(rep(1, 1<<30, 0), rep(mergeFanout-1, k, 0)), 1},
		{"nor a big first append", cat(rep(1, 20<<20, 0), rep(1, k, 0)), -1},
	}
	for _, c := range cases {
		if got := mergePlan(c.parts); got != c.want {
			t.Errorf("%s: mergePlan = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestAppendLogicalName(t *testing.T) {
	for stored, want := range map[string]string{
		manifestName("a/b.json"):     "a/b.json",
		partName("a/b.json", 7):      "a/b.json",
		partName("x", 0):             "x",
		"a/b.json":                   "",
		storage.ReservedPrefix + "k": "",
	} {
		got, ok := appendLogicalName(stored)
		if got != want || ok != (want != "") {
			t.Errorf("appendLogicalName(%q) = %q, %v", stored, got, ok)
		}
	}
}

// appendRecords lists the stored append records (manifests and parts)
// under the encryption layers.
func appendRecords(t *testing.T, b storage.Backend, name string) (manifests, parts int) {
	t.Helper()
	err := b.List(bg, appendRoot, func(oi storage.ObjectInfo) error {
		n, _ := appendLogicalName(oi.Name)
		if name != "" && n != name {
			return nil
		}
		if isManifest(oi.Name) {
			manifests++
		} else {
			parts++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return manifests, parts
}

func appendTo(t *testing.T, a *Account, name string, b []byte) {
	t.Helper()
	if err := a.Append(bg, name, bytes.NewReader(b)); err != nil {
		t.Fatalf("append %d bytes to %s: %v", len(b), name, err)
	}
}

func checkRanges(t *testing.T, b storage.Backend, name string, want []byte) {
	t.Helper()
	n := int64(len(want))
	for _, c := range []struct{ off, length int64 }{
		{0, -1}, {0, 1}, {1, 10}, {65535, 2}, {65536, 70000}, {100, n}, {n / 3, n / 3},
		{n - 1, 1}, {n - 1, 100}, {n, -1}, {n, 5}, {n + 10, -1}, {12345, 0}, {0, n + 100},
	} {
		got := storagetest.Read(t, b, name, c.off, c.length)
		lo := min(c.off, n)
		hi := n
		if c.length >= 0 {
			hi = min(n, c.off+c.length)
		}
		hi = max(hi, lo)
		if !bytes.Equal(got, want[lo:hi]) {
			t.Fatalf("%s [%d,+%d): got %d bytes, want %d", name, c.off, c.length, len(got), hi-lo)
		}
	}
	oi, err := b.Stat(bg, name)
	if err != nil || oi.Size != n || oi.Name != name {
		t.Fatalf("stat %s = %+v, %v; want size %d", name, oi, err, n)
	}
}

func TestAppendIsOneObjectThroughEveryLayer(t *testing.T) {
	for _, c := range []struct {
		name string
		set  Settings
	}{
		{"LRS", Settings{}},
		{"ZRS", Settings{Redundancy: ZRS}},
		{"RA-GZRS with double encryption", Settings{Redundancy: RAGZRS, Encryption: Encryption{KeySource: KeySourcePlatform, InfrastructureEncryption: true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.set)
			const name = "logs/h=07/PT1H.json"
			marker := []byte("APPEND-PLAINTEXT-" + fmt.Sprint(time.Now().UnixNano()))
			var want []byte
			// Sizes that cross encryption chunks (64 KiB) and make merges
			// of two size classes happen.
			for i := 0; i < 40; i++ {
				b := storagetest.Random(1 + (i*7919)%5000)
				if i%9 == 4 {
					b = storagetest.Random(70_000 + i)
				}
				b = append(append(b, marker...), '\n')
				appendTo(t, f.acc, name, b)
				want = append(want, b...)
			}
			checkRanges(t, f.acc, name, want)
			_, parts := appendRecords(t, f.acc.Primary(), name)
			if parts >= 40 || parts > 3*(mergeFanout-1) {
				t.Errorf("%d parts after 40 appends: merges do not bound them", parts)
			}
			// List shows the logical object once, with its size, beside
			// plain objects, and none of the account's records.
			storagetest.Put(t, f.acc, "logs/a", []byte("a"))
			storagetest.Put(t, f.acc, "logs/z", []byte("zz"))
			var got []string
			f.acc.List(bg, "logs/", func(oi storage.ObjectInfo) error {
				got = append(got, fmt.Sprintf("%s:%d", oi.Name, oi.Size))
				return nil
			})
			if w := fmt.Sprint([]string{"logs/a:1", fmt.Sprintf("%s:%d", name, len(want)), "logs/z:2"}); fmt.Sprint(got) != w {
				t.Fatalf("list = %v, want %v", got, w)
			}
			f.acc.List(bg, "", func(oi storage.ObjectInfo) error {
				if strings.HasPrefix(oi.Name, storage.ReservedPrefix) {
					t.Errorf("listing shows %s", oi.Name)
				}
				return nil
			})
			if _, err := f.acc.Get(bg, partName(name, 0), 0, -1); !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("a part is readable by name: %v", err)
			}
			if c.set.Redundancy.Geo() {
				f.waitSynced(t)
				checkRanges(t, f.acc.Secondary(), name, want)
			}
			if hits, _ := grep(t, f.dir, marker); len(hits) > 0 {
				t.Fatalf("appended plaintext found in %v", hits)
			}
			// Put replaces all of it; a later append extends the new object.
			storagetest.Put(t, f.acc, name, []byte("new\n"))
			if m, p := appendRecords(t, f.acc.Primary(), name); m+p != 0 {
				t.Fatalf("after put: %d manifests and %d parts left", m, p)
			}
			checkRanges(t, f.acc, name, []byte("new\n"))
			appendTo(t, f.acc, name, []byte("more\n"))
			checkRanges(t, f.acc, name, []byte("new\nmore\n"))
			if c.set.Redundancy.Geo() {
				f.waitSynced(t)
				checkRanges(t, f.acc.Secondary(), name, []byte("new\nmore\n"))
			}
			// Delete removes it all.
			if err := f.acc.Delete(bg, name); err != nil {
				t.Fatal(err)
			}
			if _, err := f.acc.Stat(bg, name); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("stat after delete = %v", err)
			}
			if m, p := appendRecords(t, f.acc.Primary(), name); m+p != 0 {
				t.Fatalf("after delete: %d manifests and %d parts left", m, p)
			}
			if c.set.Redundancy.Geo() {
				f.waitSynced(t)
				if _, err := f.acc.Secondary().Stat(bg, name); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("secondary stat after delete = %v", err)
				}
			}
		})
	}
}

// failing fails the Put of names with a prefix, as a crash between the
// part and the manifest would leave things.
type failing struct {
	storage.Backend
	prefix string
	del    string
}

func (f failing) Delete(ctx context.Context, n string) error {
	if f.del != "" && n == f.del {
		return errors.New("injected failure")
	}
	return f.Backend.Delete(ctx, n)
}

func (f failing) Put(ctx context.Context, n string, r io.Reader) error {
	if f.prefix != "" && strings.HasPrefix(n, f.prefix) {
		io.Copy(io.Discard, r)
		return errors.New("injected failure")
	}
	return f.Backend.Put(ctx, n, r)
}

func TestAppendCutShortLeavesTheOldObject(t *testing.T) {
	f := newFixture(t, Settings{})
	const name = "logs/x.json"
	appendTo(t, f.acc, name, []byte("one\n"))
	appendTo(t, f.acc, name, []byte("two\n"))
	// The part is written, the manifest is not.
	v := appendView{b: failing{Backend: f.acc.current().top, prefix: manifestPrefix}}
	if _, err := v.appendOnce(bg, name, strings.NewReader("lost\n"), appendOpts{now: time.Now()}); err == nil {
		t.Fatal("the injected failure did not fail the append")
	}
	checkRanges(t, f.acc, name, []byte("one\ntwo\n"))
	// The first append to a plain object, cut short before the plain
	// object is removed: the plain object is still the object, and the
	// next append starts again from it.
	storagetest.Put(t, f.acc, "logs/plain", []byte("plain\n"))
	v = appendView{b: failing{Backend: f.acc.current().top, del: "logs/plain"}}
	if _, err := v.appendOnce(bg, "logs/plain", strings.NewReader("lost\n"), appendOpts{now: time.Now()}); err == nil {
		t.Fatal("the injected failure did not fail the append")
	}
	checkRanges(t, f.acc, "logs/plain", []byte("plain\n"))
	appendTo(t, f.acc, "logs/plain", []byte("kept\n"))
	checkRanges(t, f.acc, "logs/plain", []byte("plain\nkept\n"))
	if m, p := appendRecords(t, f.acc.Primary(), "logs/plain"); m != 1 || p != 2 {
		t.Fatalf("%d manifests and %d parts, want 1 and 2", m, p)
	}
	// A new process (fresh account) appends and removes the stray part.
	f.close()
	f.open(t)
	appendTo(t, f.acc, name, []byte("three\n"))
	checkRanges(t, f.acc, name, []byte("one\ntwo\nthree\n"))
	m, p := appendRecords(t, f.acc.Primary(), name)
	if m != 1 || p != 3 {
		t.Fatalf("%d manifests and %d parts, want 1 and 3 (the stray part removed)", m, p)
	}
}

// TestPutCutShortKeepsThePlainObject: a Put that wrote the plain object
// and crashed before removing the appendable one shows the plain object;
// the next append starts from it.
func TestPutCutShortKeepsThePlainObject(t *testing.T) {
	f := newFixture(t, Settings{})
	const name = "logs/y.json"
	appendTo(t, f.acc, name, []byte("old\n"))
	if err := f.acc.current().top.Put(bg, name, strings.NewReader("replaced\n")); err != nil {
		t.Fatal(err)
	}
	checkRanges(t, f.acc, name, []byte("replaced\n"))
	var names []string
	f.acc.List(bg, "logs/", func(oi storage.ObjectInfo) error { names = append(names, oi.Name); return nil })
	if len(names) != 1 {
		t.Fatalf("list = %v", names)
	}
	appendTo(t, f.acc, name, []byte("next\n"))
	checkRanges(t, f.acc, name, []byte("replaced\nnext\n"))
}

func TestAppendIsRefusedWhereWritesAre(t *testing.T) {
	f := newFixture(t, Settings{})
	if err := f.acc.Append(bg, manifestName("x"), strings.NewReader("x")); !errors.Is(err, storage.ErrInvalidName) {
		t.Fatalf("append to a reserved name = %v", err)
	}
}

// TestReadAcrossAMerge: a reader that opened the object before a merge
// removed the parts it was about to read goes on from the new parts.
func TestReadAcrossAMerge(t *testing.T) {
	f := newFixture(t, Settings{})
	const name = "logs/m.json"
	var want []byte
	for i := 0; i < mergeFanout-1; i++ {
		b := []byte(fmt.Sprintf("line %d\n", i))
		appendTo(t, f.acc, name, b)
		want = append(want, b...)
	}
	r, err := f.acc.Get(bg, name, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first := make([]byte, 3)
	io.ReadFull(r, first)
	appendTo(t, f.acc, name, []byte("merging\n")) // the eighth part: merged
	if _, p := appendRecords(t, f.acc.Primary(), name); p != 1 {
		t.Fatalf("%d parts after the merge, want 1", p)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(first, rest...); !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// TestMergedPartsStayUntilTheSecondaryHasTheManifest: with geo-replication,
// parts merged away are removed only once the manifest that no longer
// names them is in the secondary, which reads the object at every step.
func TestMergedPartsStayUntilTheSecondaryHasTheManifest(t *testing.T) {
	var held atomic.Bool
	f := newFixture(t, Settings{Redundancy: RAGRS}, func(o *Options) { o.HoldShipping = held.Load })
	f.waitSynced(t)
	const name = "logs/g.json"
	var want []byte
	add := func(s string) {
		appendTo(t, f.acc, name, []byte(s))
		want = append(want, s...)
	}
	add("first\n")
	f.waitSynced(t)
	held.Store(true)
	for i := 0; i < mergeFanout; i++ {
		add(fmt.Sprintf("line %d\n", i))
	}
	// Merged on the primary; the old parts wait for the secondary.
	if _, p := appendRecords(t, f.acc.Primary(), name); p < mergeFanout {
		t.Fatalf("%d parts on the primary: merged-away parts were removed before the secondary had the new manifest", p)
	}
	checkRanges(t, f.acc, name, want)
	checkRanges(t, f.acc.Secondary(), name, []byte("first\n"))
	held.Store(false)
	f.waitSynced(t)
	checkRanges(t, f.acc.Secondary(), name, want)
	add("after\n")
	f.waitSynced(t)
	if _, p := appendRecords(t, f.acc.Primary(), name); p > 3 {
		t.Fatalf("%d parts once the secondary caught up: the merged-away parts stay", p)
	}
	checkRanges(t, f.acc.Secondary(), name, want)
}

// TestAnAccountWithOnlyAppendedObjectsIsNotEmpty: turning infrastructure
// encryption on converts appended objects like others (an empty account
// would switch at once and lose them).
func TestAnAccountWithOnlyAppendedObjectsIsNotEmpty(t *testing.T) {
	f := newFixture(t, Settings{})
	appendTo(t, f.acc, "logs/only.json", []byte("kept\n"))
	f.update(t, func(s *Settings) { s.Encryption.InfrastructureEncryption = true })
	f.waitConversion(t)
	checkRanges(t, f.acc, "logs/only.json", []byte("kept\n"))
	appendTo(t, f.acc, "logs/only.json", []byte("more\n"))
	checkRanges(t, f.acc, "logs/only.json", []byte("kept\nmore\n"))
}
