package fsverity

import (
	"encoding/hex"
	"fmt"
)

// Hex formats d as 64 lower-case hexadecimal digits, as `fsverity digest`
// prints it (without its "sha256:" prefix).
func Hex(d [Size]byte) string {
	return hex.EncodeToString(d[:])
}

// ParseHex parses 64 hexadecimal digits (either case) into a digest. It
// returns an error wrapping ErrInvalidHex for anything else.
func ParseHex(s string) ([Size]byte, error) {
	var d [Size]byte
	if len(s) != 2*Size {
		return d, fmt.Errorf("%w: %q has length %d, want %d", ErrInvalidHex, s, len(s), 2*Size)
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("%w: %q: %v", ErrInvalidHex, s, err)
	}
	return d, nil
}
