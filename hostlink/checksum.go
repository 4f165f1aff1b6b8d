package hostlink

import (
	"encoding/hex"
	"fmt"
)

// Checksum is an ostree object name: the SHA-256 checksum that ostree
// computes over an object (for file objects, over their header and
// content; see ChecksumFile).
type Checksum [32]byte

// ParseChecksum parses a checksum written as 64 lowercase hex digits.
func ParseChecksum(s string) (Checksum, error) {
	var c Checksum
	if len(s) != 64 {
		return c, fmt.Errorf("%w: %q: want 64 hex digits", ErrBadChecksum, s)
	}
	for i := 0; i < len(s); i++ {
		if ch := s[i]; !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f') {
			return c, fmt.Errorf("%w: %q: want lowercase hex", ErrBadChecksum, s)
		}
	}
	if _, err := hex.Decode(c[:], []byte(s)); err != nil {
		return c, fmt.Errorf("%w: %q: %v", ErrBadChecksum, s, err)
	}
	return c, nil
}

// checksumFromBytes converts a 32-byte checksum stored in an ostree object
// ("ay" fields).
func checksumFromBytes(b []byte) (Checksum, error) {
	var c Checksum
	if len(b) != len(c) {
		return c, fmt.Errorf("%w: %d bytes, want 32", ErrBadChecksum, len(b))
	}
	copy(c[:], b)
	return c, nil
}

// String returns the checksum as 64 lowercase hex digits.
func (c Checksum) String() string { return hex.EncodeToString(c[:]) }

// IsZero reports whether c is all zeros (no checksum).
func (c Checksum) IsZero() bool { return c == Checksum{} }

// ObjectType is the kind of an ostree object, which is also the suffix of
// its file name in objects/xx/.
type ObjectType string

// The object types of bare repositories.
const (
	ObjectFile    ObjectType = "file"
	ObjectDirTree ObjectType = "dirtree"
	ObjectDirMeta ObjectType = "dirmeta"
	ObjectCommit  ObjectType = "commit"
)
