// Package geo is the asynchronous geo-replication of a storage account
// (GRS, GZRS and their read-access variants): a storage.Backend layer that
// writes to the primary location and ships every change to the secondary
// region's account in the background.
//
// Every write first appends the object's name to a durable journal (one
// fsync, shared by concurrent writers), then writes the primary. A shipper
// loop reads the journal in order and copies each named object's current
// state to the secondary (or deletes it there), so shipping is idempotent
// and resumes after a crash or a network cut from the last shipped entry.
// A secondary that is down is retried with exponential backoff while the
// journal holds the backlog. The Last Sync Time is the time up to which
// every change is known to be in the secondary: the time of the oldest
// entry not yet shipped, or now when none is waiting.
//
// The secondary is any storage.Backend: in tests another directory or an
// Azurite container, in a deployment the peer region's account.
package geo
