// Package sse is server-side encryption of a storage account: a layer that
// is itself a storage.Backend and encrypts every object it passes to the
// backend below it. The account stacks it once for service-level
// encryption (AES-256-GCM under the platform key or a customer-managed
// key) and, with infrastructure (double) encryption on, a second time
// below the first with its own platform key and XChaCha20-Poly1305.
//
// Key hierarchy. Each object has its own random data key (DEK). The DEK is
// wrapped by the layer's account key and kept in the object's header. The
// account key is wrapped by the key-encryption key (KEK: a platform key or
// a customer-managed key in a key vault) and kept in one small key record,
// stored through the same backend under storage.ReservedPrefix, so it has
// the copies and geo-replication of the data. Rotating or switching the KEK
// re-wraps the account key, which re-keys every DEK's wrapping at once
// without rewriting any object: that is Azure Storage's model, and it keeps
// a write to one object write, where a per-object key record would double
// the writes (and the fsyncs) of every Put. Every read and write unwraps
// the account key through the KEK (unless a cache TTL is configured), so a
// disabled or revoked KEK makes them fail closed with keys.ErrKeyDisabled,
// naming the key; re-enabling it restores access.
//
// Object format. A header, then the plaintext in chunks of 64 KiB, each
// sealed on its own so that a read at an offset decrypts only the chunks it
// needs:
//
//	"TSE1" | algorithm (1) | log2 chunk size (1) | wrapped DEK length (2) |
//	account key id (8) | wrapped DEK | chunk 0 | chunk 1 | ...
//
// The wrapped DEK is sealed by the account key with the header's first 16
// bytes and the object name as associated data, so an object moved to
// another name does not open. Chunk i is sealed by the DEK with the whole
// header as associated data and a nonce made of its index and a flag that
// marks the last chunk: chunks cannot be reordered, dropped, or the object
// truncated or extended without the read failing. Every object has at least
// one chunk (an empty object has one empty final chunk), and only the last
// chunk may be short, so the plaintext size follows from the stored size.
//
// What is not encrypted: object names and sizes (as in Azure Storage),
// listings and deletes, which keep working while a key is revoked, as they
// do in Azure.
package sse
