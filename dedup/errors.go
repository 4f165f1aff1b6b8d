package dedup

import "errors"

// Sentinel errors. Returned errors wrap them with context; test with
// errors.Is.
var (
	// ErrNotFound: no object with that digest, or no refs for that layer.
	ErrNotFound = errors.New("dedup: not found")
	// ErrInvalidDigest: a string is not 64 hexadecimal digits.
	ErrInvalidDigest = errors.New("dedup: invalid digest")
	// ErrInvalidLayerID: a layer ID is empty, too long, or has characters
	// other than [A-Za-z0-9._-] (or starts with '.').
	ErrInvalidLayerID = errors.New("dedup: invalid layer id")
	// ErrDigestMismatch: content did not hash to the digest the caller
	// said it would.
	ErrDigestMismatch = errors.New("dedup: digest mismatch")
	// ErrUnsupportedFormat: the store on disk has a format version this
	// code does not know.
	ErrUnsupportedFormat = errors.New("dedup: unsupported store format")
	// ErrCorruptRefs: a refs or pending file fails its checks.
	ErrCorruptRefs = errors.New("dedup: corrupt refs file")
	// ErrVerityUnsupported: Options.Verity is VerityRequire and the
	// kernel or filesystem lacks fs-verity. It also wraps
	// fsverity.ErrNotSupported.
	ErrVerityUnsupported = errors.New("dedup: fs-verity required but not supported by the kernel or filesystem")
	// ErrLinkUnsupported: InsertFile could not use the requested link mode
	// (for example a hard link across file systems, or a reflink on ext4).
	ErrLinkUnsupported = errors.New("dedup: link mode not possible for this file")
	// ErrSourceChanged: the file given to InsertFile changed while it was
	// being inserted.
	ErrSourceChanged = errors.New("dedup: source file changed during insert")
	// ErrClosed: the Store or Ingest was already closed.
	ErrClosed = errors.New("dedup: closed")
)
