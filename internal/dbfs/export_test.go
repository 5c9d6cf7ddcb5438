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

// SetPurgeBatch changes how many versions one purge transaction deletes
// and returns a function that puts it back.
func SetPurgeBatch(n int) (restore func()) {
	old := purgeBatch
	purgeBatch = n
	return func() { purgeBatch = old }
}
