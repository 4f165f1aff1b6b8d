package hostlink

import "errors"

// Sentinel errors of the repository reader and the content index, tested
// with errors.Is. Errors returned wrap one of these with the path or
// object concerned.
var (
	// errNotRepo reports a directory that is not an ostree repository
	// (no readable config with a [core] group).
	errNotRepo = errors.New("hostlink: not an ostree repository")
	// errUnsupportedMode reports a repository mode this package cannot
	// share objects from: archive and archive-z2 repositories store file
	// objects compressed (.filez), so their content is not a plain file.
	errUnsupportedMode = errors.New("hostlink: unsupported ostree repository mode")
	// errBadChecksum reports a malformed checksum string or field.
	errBadChecksum = errors.New("hostlink: malformed checksum")
	// errMissingObject reports an object that a commit or dirtree refers
	// to but that is not in the repository (pruned, or a partial pull).
	errMissingObject = errors.New("hostlink: object missing from repository")
	// errCorrupt reports an object whose content does not match its name
	// or that cannot be decoded.
	errCorrupt = errors.New("hostlink: corrupt object")
	// errBadRef reports a ref file that does not hold a checksum, or an
	// unknown ref.
	errBadRef = errors.New("hostlink: bad ref")
	// errCacheInRepo reports an IndexOptions.CacheDir inside the host
	// repository, which must never be written.
	errCacheInRepo = errors.New("hostlink: digest cache directory inside the host repository")
	// errInvalidOptions reports missing or malformed IndexOptions.
	errInvalidOptions = errors.New("hostlink: invalid index options")
)

// errNotStageable reports a host object that a Stager cannot make
// hard-linkable into the store (another filesystem, no usable namespace
// helper). The object may still be cloned or copied from its own path.
var errNotStageable = errors.New("hostlink: host object not stageable")
