package dedup

import (
	"encoding/hex"
	"fmt"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// Digest is an object's name: the fs-verity SHA-256 digest of its content
// (4096-byte blocks, no salt), as composefs images record it.
type Digest [fsverity.Size]byte

// String formats d as 64 lower-case hexadecimal digits.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses 64 hexadecimal digits. Errors wrap ErrInvalidDigest.
func ParseDigest(s string) (Digest, error) {
	v, err := fsverity.ParseHex(s)
	if err != nil {
		return Digest{}, fmt.Errorf("%w: %w", ErrInvalidDigest, err)
	}
	return Digest(v), nil
}

// SHA256 is a plain SHA-256 of an object's content, as zstd:chunked
// tables of contents and ostree payload links name content.
type SHA256 [32]byte

// String formats s as 64 lower-case hexadecimal digits.
func (s SHA256) String() string { return hex.EncodeToString(s[:]) }

// ParseSHA256 parses 64 hexadecimal digits. Errors wrap ErrInvalidDigest.
func ParseSHA256(s string) (SHA256, error) {
	d, err := ParseDigest(s)
	return SHA256(d), err
}

// ObjectPath returns the path of the object named d relative to the
// objects directory: its first two hexadecimal digits, a slash, and the
// other 62 ("ab/cdef…"). Composefs images redirect to this path.
func ObjectPath(d Digest) string {
	x := d.String()
	return x[:2] + "/" + x[2:]
}
