package compute

import (
	"context"

	"github.com/tandemdata/tandem/internal/permissions"
	"github.com/tandemdata/tandem/internal/principal"
	"github.com/tandemdata/tandem/internal/store"
)

// CheckClusterMetrics checks that p may read a cluster's node metrics:
// those who may attach to it, as for its Spark UI and driver logs.
func (s *Service) CheckClusterMetrics(ctx context.Context, p principal.Principal, clusterID string) error {
	return s.Store.View(ctx, func(tx store.Tx) error {
		_, err := s.lookupCluster(tx, p, clusterID, permissions.CanAttachTo)
		return err
	})
}
