// Package dedup is the content-addressed object store: every file content
// of every layer stored once, named by its fs-verity SHA-256 digest, laid
// out as objects/xx/<62 hex> so that the objects directory serves as an
// overlayfs data-only lower layer for composefs images.
//
// It owns insertion (from a stream, or by linking an existing file), lookup
// by digest, per-layer reference sets, garbage collection, fsck and
// statistics. It knows nothing of containers/storage.
package dedup
