// Package account is a region's storage account: the storage.Backend that
// DBFS, workspace contents, delivered logs and backups are written to,
// composed of layers, top to bottom:
//
//	sse (service-level encryption: AES-256-GCM, platform or customer key)
//	sse (infrastructure encryption: XChaCha20-Poly1305, platform key; optional)
//	geo (asynchronous copy to the secondary; GRS, GZRS and RA- variants)
//	redundancy (three synchronous copies: directories for LRS, zones for ZRS)
//
// Callers see plaintext names, sizes and ranges; every property comes from
// the layers without code in the callers. The account's settings
// (redundancy, keys, double encryption, failover state) live in the
// metadata store, changed through the admin API under
// /api/2.0/tandem/storage, admin only and audited. A change rebuilds the
// stack: a new KEK re-wraps the account key, a change between LRS and ZRS
// copies the stored objects to the new copies while calls wait, turning
// geo-replication on starts an initial sync, turning infrastructure
// encryption on or off converts the objects in the background (convert.go),
// and an account failover makes
// the secondary's copy the account (locally redundant until geo-redundancy
// is turned back on, as in Azure).
package account
