// Package dedup is the content-addressed object store: every file content
// of every layer stored once, named by its fs-verity SHA-256 digest, laid
// out as objects/xx/<62 hex> so that the objects directory serves as an
// overlayfs data-only lower layer for composefs images.
//
// It owns insertion (from a stream, or by linking an existing file), lookup
// by digest, per-layer reference sets, garbage collection, fsck and
// statistics. It knows nothing of containers/storage.
//
// # Lifecycle
//
// A layer ingest opens a session, inserts its contents, and commits the
// set of digests as the layer's references:
//
//	s, _ := dedup.Open(root, dedup.Options{})
//	in, _ := s.BeginIngest(ctx)
//	for each regular file: in.Insert(ctx, r, dedup.InsertOptions{})
//	                       (or in.InsertFile for a host file, in.Ref for
//	                       an object found by LookupSHA256)
//	in.Commit(ctx, layerID)   // or in.Abort()
//	...
//	s.DropRefs(ctx, layerID)  // when the layer is removed
//	s.GC(ctx)                 // deletes what no layer and no session uses
//
// GC, fsck and any number of sessions may run at once in any number of
// processes. The in-flight rule is a pending set per session, not a grace
// period: an object is kept if a layer's refs name it or a live session
// has pinned it (every Insert, InsertFile and Ref pins before returning).
// A session whose process died pins nothing. Store.Insert and
// Store.InsertFile use a session owned by the Store, which pins until
// Store.Close (Close does not end sessions from BeginIngest). See
// FORMAT.md beside this file for the layout, the locking, the format
// version and the fsync policy.
//
// # Writes for content already present
//
// Content up to Options.SmallThreshold is hashed in memory: if present,
// nothing is written. Larger content is streamed into an unnamed
// temporary file while it is hashed (its digest is known only at the
// end); if present, the file is dropped unsynced, so its pages normally
// never reach the disk. A caller that knows the digest beforehand
// (InsertOptions.Digest, or SHA256 with the index) gets a hash-only path
// with no write at all.
//
// The user-space fs-verity digest and the kernel calls are in the
// subpackage fsverity.
package dedup
