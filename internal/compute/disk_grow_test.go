package compute

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/tandemdata/tandem/internal/compute/provider"
)

// growProvider is a provider whose instances' scratch volumes grow.
type growProvider struct {
	provider.Provider
	calls []int64
	fail  error
}

func (p *growProvider) GrowScratch(ctx context.Context, id string, bytes int64) error {
	p.calls = append(p.calls, bytes)
	return p.fail
}

type fixedProvider struct{ provider.Provider }

// TestGrowScratch: an agent's request for a bigger scratch volume reaches
// the provider once per size however often the reports repeat it, a
// refusal goes back with the provider's reason, and a provider that
// cannot grow volumes says so.
func TestGrowScratch(t *testing.T) {
	ctx := context.Background()
	p := &growProvider{}
	s := &Service{Provider: p, Log: slog.New(slog.DiscardHandler)}
	steps := []struct {
		want    int64
		fail    error
		granted int64
		refused string
		calls   int
	}{
		{want: 3 << 30, granted: 3 << 30, calls: 1},
		{want: 3 << 30, granted: 3 << 30, calls: 1}, // the next report asks again
		{want: 2 << 30, granted: 3 << 30, calls: 1}, // smaller: already granted
		{want: 4 << 30, fail: errors.New("storageclass does not support resize"), granted: 3 << 30, refused: "storageclass does not support resize", calls: 2},
		{want: 4 << 30, granted: 4 << 30, calls: 3}, // refused before, asked again later: tried again
	}
	for i, st := range steps {
		p.fail = st.fail
		granted, refused := s.growScratch(ctx, "i-1", st.want)
		if granted != st.granted || refused != st.refused || len(p.calls) != st.calls {
			t.Fatalf("step %d: granted %d refused %q after %d calls; want %d %q %d", i, granted, refused, len(p.calls), st.granted, st.refused, st.calls)
		}
	}
	s.forgetGrant("i-1")
	if granted, _ := s.growScratch(ctx, "i-1", 1<<30); granted != 1<<30 || len(p.calls) != 4 {
		t.Fatalf("after the instance went: granted %d, %d calls", granted, len(p.calls))
	}

	s = &Service{Provider: fixedProvider{}, Log: slog.New(slog.DiscardHandler)}
	if granted, refused := s.growScratch(ctx, "i-1", 1<<30); granted != 0 || refused == "" {
		t.Fatalf("a provider that cannot grow volumes: %d %q", granted, refused)
	}
}
