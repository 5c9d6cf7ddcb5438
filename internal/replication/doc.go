// Package replication keeps a secondary region's metadata in step with its
// primary: the follower pulls the primary's change log over mutual TLS from
// a peer-only endpoint, applies every change with store.Apply under the
// primary's sequence number (the store's LastSeq is the only cursor, so a
// crash or a cut link resumes exactly where it stopped), and measures how far
// behind it is. On the way in it puts replicated documents into the passive
// posture their owners registered (pools keep no idle instances, schedules
// are paused) and keeps the primary's real values aside for promotion. It
// also shares, once per pairing and encrypted end to end, the key-encryption
// keys that wrap replicated secrets.
//
// It is not the failover logic (roles, epochs, fencing and runbooks are in
// internal/dr) and it does not copy storage-account contents (the storage
// account's geo-replication does; RemoteBackend is its secondary over the
// same link).
package replication
