package dbfs

import "github.com/tandemdata/tandem/internal/store"

// Upload handles belong to the region that opened them: they are never
// replicated to the peer region (an upload in progress at a failover starts
// again there), and their documents take no place in the change log.
func init() { store.RegisterLocal(kindHandle) }
