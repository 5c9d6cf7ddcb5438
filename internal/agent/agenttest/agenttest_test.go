package agenttest

import (
	"testing"

	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/compute/provider/providertest"
)

func TestProviderBehaviour(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider {
		p := NewProvider(t.TempDir())
		t.Cleanup(p.Close)
		return p
	}, func(p provider.Provider, id string) { p.(*Provider).Kill(id) })
}
