package geo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/storage"
	"github.com/tandemdata/tandem/internal/storage/local"
	"github.com/tandemdata/tandem/internal/storage/storagetest"
)

// recorder records the order of the writes it takes.
type recorder struct {
	storage.Backend
	mu  sync.Mutex
	ops []string
}

func (r *recorder) note(op string) { r.mu.Lock(); r.ops = append(r.ops, op); r.mu.Unlock() }
func (r *recorder) Put(ctx context.Context, n string, rd io.Reader) error {
	r.note("put " + n)
	return r.Backend.Put(ctx, n, rd)
}
func (r *recorder) Delete(ctx context.Context, n string) error {
	r.note("delete " + n)
	return r.Backend.Delete(ctx, n)
}

// TestShipmentOrdersReferencesLast: with Config.Last, a batch ships new
// contents first, then the objects that refer to them, then deletions, so
// the secondary never holds a manifest naming a part it lacks.
func TestShipmentOrdersReferencesLast(t *testing.T) {
	prim, _ := local.New(t.TempDir())
	sec, _ := local.New(t.TempDir())
	rec := &recorder{Backend: sec}
	l, err := Open(Config{Primary: prim, Secondary: rec, JournalDir: t.TempDir(), Workers: 4,
		Last: func(n string) bool { return strings.HasPrefix(n, "m/") }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// What an append with a merge leaves to ship: new parts, the
	// manifest, parts merged away (deleted on the primary).
	for _, n := range []string{"p/old1", "p/old2"} {
		storagetest.Put(t, sec, n, []byte("x"))
	}
	for _, n := range []string{"m/a", "p/old1", "p/new", "p/old2", "other"} {
		if !strings.HasPrefix(n, "p/old") {
			storagetest.Put(t, prim, n, []byte(n))
		}
		e, err := l.j.append(n, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		l.j.complete(e)
	}
	batch := l.j.batch(256)
	// After the batch was taken, an append wrote a part and the manifest
	// again: the manifest shipped now names it, so it ships first.
	e, err := l.j.append("p/later", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Put(t, prim, "p/later", []byte("later"))
	l.j.complete(e)
	storagetest.Put(t, prim, "m/a", []byte("m/a naming p/later"))
	if err := l.ship(bg, batch); err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, op := range rec.ops {
		pos[op] = i
	}
	for _, c := range [][2]string{
		{"put p/new", "put m/a"}, {"put other", "put m/a"}, {"put p/later", "put m/a"},
		{"put m/a", "delete p/old1"}, {"put m/a", "delete p/old2"},
	} {
		a, okA := pos[c[0]]
		b, okB := pos[c[1]]
		if !okA || !okB || a > b {
			t.Errorf("%q must ship before %q: %v", c[0], c[1], rec.ops)
		}
	}
	if n := len(rec.ops); n != 6 {
		t.Errorf("%d operations shipped, want 6: %v", n, fmt.Sprint(rec.ops))
	}
}
