package hostlink

import "errors"

// Sentinel errors of the repository reader and the content index, tested
// with errors.Is. Errors returned wrap one of these with the path or
// object concerned.
var (
	// ErrNotRepo reports a directory that is not an ostree repository
	// (no readable config with a [core] group).
	ErrNotRepo = errors.New("hostlink: not an ostree repository")
	// ErrUnsupportedMode reports a repository mode this package cannot
	// share objects from: archive and archive-z2 repositories store file
	// objects compressed (.filez), so their content is not a plain file.
	ErrUnsupportedMode = errors.New("hostlink: unsupported ostree repository mode")
	// ErrBadChecksum reports a malformed checksum string or field.
	ErrBadChecksum = errors.New("hostlink: malformed checksum")
	// ErrMissingObject reports an object that a commit or dirtree refers
	// to but that is not in the repository (pruned, or a partial pull).
	ErrMissingObject = errors.New("hostlink: object missing from repository")
	// ErrCorrupt reports an object whose content does not match its name
	// or that cannot be decoded.
	ErrCorrupt = errors.New("hostlink: corrupt object")
	// ErrBadRef reports a ref file that does not hold a checksum, or an
	// unknown ref.
	ErrBadRef = errors.New("hostlink: bad ref")
	// ErrCacheInRepo reports an IndexOptions.CacheDir inside the host
	// repository, which must never be written.
	ErrCacheInRepo = errors.New("hostlink: digest cache directory inside the host repository")
	// ErrInvalidOptions reports missing or malformed IndexOptions.
	ErrInvalidOptions = errors.New("hostlink: invalid index options")
)

// ErrNotStageable reports a host object that a Stager cannot make
// hard-linkable into the store (another filesystem, no usable namespace
// helper). The object may still be cloned or copied from its own path.
var ErrNotStageable = errors.New("hostlink: host object not stageable")
