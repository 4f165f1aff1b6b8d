package hostlink

import (
	"encoding/hex"
	"fmt"
)

// checksum is an ostree object name: the SHA-256 checksum that ostree
// computes over an object (for file objects, over their header and
// content; see checksumFile).
type checksum [32]byte

// parseChecksum parses a checksum written as 64 lowercase hex digits.
func parseChecksum(s string) (checksum, error) {
	var c checksum
	if len(s) != 64 {
		return c, fmt.Errorf("%w: %q: want 64 hex digits", errBadChecksum, s)
	}
	for i := 0; i < len(s); i++ {
		if ch := s[i]; !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f') {
			return c, fmt.Errorf("%w: %q: want lowercase hex", errBadChecksum, s)
		}
	}
	if _, err := hex.Decode(c[:], []byte(s)); err != nil {
		return c, fmt.Errorf("%w: %q: %v", errBadChecksum, s, err)
	}
	return c, nil
}

// checksumFromBytes converts a 32-byte checksum stored in an ostree object
// ("ay" fields).
func checksumFromBytes(b []byte) (checksum, error) {
	var c checksum
	if len(b) != len(c) {
		return c, fmt.Errorf("%w: %d bytes, want 32", errBadChecksum, len(b))
	}
	copy(c[:], b)
	return c, nil
}

// String returns the checksum as 64 lowercase hex digits.
func (c checksum) String() string { return hex.EncodeToString(c[:]) }

// IsZero reports whether c is all zeros (no checksum).
func (c checksum) IsZero() bool { return c == checksum{} }

// objectType is the kind of an ostree object, which is also the suffix of
// its file name in objects/xx/.
type objectType string

// The object types of bare repositories.
const (
	objectFile    objectType = "file"
	objectDirTree objectType = "dirtree"
	objectDirMeta objectType = "dirmeta"
	objectCommit  objectType = "commit"
)
