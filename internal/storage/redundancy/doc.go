// Package redundancy keeps every object of a storage account in several
// copies, each on its own storage.Backend: three directories in one
// location for LRS, or one directory (or Azurite container) per zone for
// ZRS. The Layer is itself a storage.Backend.
//
// Each copy stores the object followed by a trailer: the SHA-256 of every
// 1 MiB block, the object's size, its write generation and the SHA-256 of
// all of that. A read checks each block against the trailer before it
// hands it out, so a bit flip in one copy is never returned: the read goes
// on from another copy, and the bad copy is repaired from the good one.
//
// Writes go to every copy at once and succeed when a majority of the
// healthy copies has the whole object; a copy that missed a write is marked
// degraded (durably, before the write is acknowledged) and is not read from
// until the scrubber has brought it back in line with the healthy copies.
// The scrubber also walks every object now and then, verifies every block
// of every copy and repairs what it finds. Each copy carries a marker
// record; a copy whose marker is gone (a zone directory removed) is treated
// as lost and rebuilt.
//
// What it is not: geo-replication (package geo) or encryption (package
// sse); the layer stores whatever bytes it is given.
package redundancy
