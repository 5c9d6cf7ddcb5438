package dbfs

import (
	"context"
	"time"
)

// Sweep runs the blob sweep with a given grace, for tests that check what
// it keeps.
func (s *Service) Sweep(ctx context.Context, grace time.Duration) (int, error) {
	return s.sweep(ctx, grace)
}
