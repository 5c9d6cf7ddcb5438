// Package dbfs is Tandem's DBFS: the Databricks File System API
// (/api/2.0/dbfs/*) and Tandem's restore points for it
// (/api/2.0/tandem/dbfs/versions and /restore).
//
// The namespace lives in the metadata store: one document per file or
// directory, keyed by parent and name, so listing a directory reads only its
// children. File contents live in the region's storage account as immutable
// blobs: a file is an ordered list of blocks with their sizes, so a streamed
// upload never rewrites what it already sent and a read at an offset fetches
// only the blocks that hold it. A file appears whole, in one store
// transaction, when its upload ends; moves, overwrites, recursive deletes and
// restores are single transactions too.
//
// Replaced, deleted and moved-away files keep their contents as versions for
// a retention period (config dbfs_version_retention, 7 days by default), and a
// file or a whole folder can be brought back to its state at any time within
// it. The background loop (Service.Run) expires idle upload handles, purges
// versions older than the retention and sweeps blobs nothing references.
//
// Access: like Databricks' DBFS, there is no per-file access control. Every
// authenticated workspace user may read and change every path. The one
// ownership rule is on upload handles: only the principal that created a
// handle may add blocks to it or close it.
//
// It is not the Files API (/api/2.0/fs, Unity Catalog volumes) and not the
// workspace file tree (package workspace).
package dbfs
