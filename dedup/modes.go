package dedup

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrInvalidOption: an option string is not one of the accepted values.
var ErrInvalidOption = errors.New("dedup: invalid option value")

var verityNames = [...]string{"none", "auto", "require"}

// String returns "none", "auto" or "require".
func (m VerityMode) String() string {
	if m >= 0 && int(m) < len(verityNames) {
		return verityNames[m]
	}
	return "VerityMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseVerityMode parses "none", "auto" or "require", the words of the
// driver option verity. Other values give ErrInvalidOption.
func ParseVerityMode(s string) (VerityMode, error) {
	for i, n := range verityNames {
		if s == n {
			return VerityMode(i), nil
		}
	}
	return VerityNone, fmt.Errorf("%w: verity=%q (want none, auto or require)", ErrInvalidOption, s)
}

// ParseLinkMode parses a requested link mode: "auto", "hardlink",
// "reflink" or "copy" (the result-only modes are refused). Other values
// give ErrInvalidOption.
func ParseLinkMode(s string) (LinkMode, error) {
	for _, m := range []LinkMode{LinkAuto, LinkHardlink, LinkReflink, LinkCopy} {
		if s == m.String() {
			return m, nil
		}
	}
	return LinkAuto, fmt.Errorf("%w: link mode %q (want auto, hardlink, reflink or copy)", ErrInvalidOption, s)
}

var syncNames = [...]string{"batch", "each", "never"}

// String returns "batch", "each" or "never".
func (m SyncMode) String() string {
	if m >= 0 && int(m) < len(syncNames) {
		return syncNames[m]
	}
	return "SyncMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseSyncMode parses "batch", "each" or "never". Other values give
// ErrInvalidOption.
func ParseSyncMode(s string) (SyncMode, error) {
	for i, n := range syncNames {
		if s == n {
			return SyncMode(i), nil
		}
	}
	return SyncBatch, fmt.Errorf("%w: sync=%q (want batch, each or never)", ErrInvalidOption, s)
}
