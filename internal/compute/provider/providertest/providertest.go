// Package providertest is the behaviour suite every instance provider
// passes: creation is idempotent, listing shows what runs, deletion
// removes and is told apart from deleting nothing.
package providertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/pki"
)

// Run runs the suite against a fresh provider from make. stop, if set,
// ends an instance's processes the way a crash would, to check that List
// reports it gone.
func Run(t *testing.T, make func(t *testing.T) provider.Provider, stop func(p provider.Provider, id string)) {
	ctx := context.Background()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "providertest")
	if err != nil {
		t.Fatal(err)
	}
	spec := func(id string) provider.Spec {
		iss, err := ca.IssueClient(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// Nothing listens at the control URL: the instance's agent keeps
		// trying, which is all the suite needs.
		return provider.Spec{ID: id, NodeType: "tandem.small", Cores: 1, MemoryMB: 2048, ControlURL: "https://127.0.0.1:1",
			CAPEM: ca.CertPEM, CertPEM: iss.CertPEM, KeyPEM: iss.KeyPEM}
	}
	find := func(t *testing.T, p provider.Provider, id string) (provider.Instance, bool) {
		t.Helper()
		list, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range list {
			if in.ID == id {
				return in, true
			}
		}
		return provider.Instance{}, false
	}

	t.Run("CreateListDelete", func(t *testing.T) {
		p := make(t)
		if err := p.Create(ctx, spec("i-0001")); err != nil {
			t.Fatal(err)
		}
		in, ok := find(t, p, "i-0001")
		if !ok || !in.Running || in.NodeType != "tandem.small" {
			t.Fatalf("after create: %+v %v", in, ok)
		}
		if err := p.Delete(ctx, "i-0001"); err != nil {
			t.Fatal(err)
		}
		if _, ok := find(t, p, "i-0001"); ok {
			t.Fatal("listed after delete")
		}
	})
	t.Run("CreateIsIdempotent", func(t *testing.T) {
		p := make(t)
		for i := 0; i < 2; i++ {
			if err := p.Create(ctx, spec("i-0002")); err != nil {
				t.Fatalf("create #%d: %v", i+1, err)
			}
		}
		list, _ := p.List(ctx)
		if len(list) != 1 {
			t.Fatalf("%d instances after creating one twice", len(list))
		}
		p.Delete(ctx, "i-0002")
	})
	t.Run("DeleteUnknown", func(t *testing.T) {
		p := make(t)
		if err := p.Delete(ctx, "i-nothere"); !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("delete unknown: %v", err)
		}
	})
	if stop != nil {
		t.Run("ListShowsEndedInstances", func(t *testing.T) {
			p := make(t)
			if err := p.Create(ctx, spec("i-0003")); err != nil {
				t.Fatal(err)
			}
			stop(p, "i-0003")
			in, ok := find(t, p, "i-0003")
			if !ok || in.Running {
				t.Fatalf("after the instance ended: %+v listed %v", in, ok)
			}
			if err := p.Delete(ctx, "i-0003"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
