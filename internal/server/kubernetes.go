package server

import (
	"errors"

	"github.com/tandemdata/tandem/internal/compute/provider"
	"github.com/tandemdata/tandem/internal/config"
)

func newKubernetesProvider(cfg config.Compute) (provider.Provider, error) {
	return nil, errors.New("the kubernetes provider is not available in this build")
}
