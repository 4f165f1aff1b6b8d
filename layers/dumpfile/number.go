package dumpfile

import "math"

// isCSpace reports whether c is a C-locale isspace character.
func isCSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

// strtoull parses s like C strtoull(s, &end, base) with the requirement
// that s is non-empty and fully consumed: optional leading white space, an
// optional sign ('-' negates modulo 2^64), one or more digits. Overflow
// saturates to 2^64-1.
func strtoull(s []byte, base uint64) (uint64, bool) {
	if len(s) == 0 {
		return 0, false
	}
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	var v uint64
	overflow := false
	for ; i < len(s); i++ {
		d := uint64(s[i]) - '0'
		if d >= base {
			break
		}
		if v > (math.MaxUint64-d)/base {
			overflow = true
		}
		v = v*base + d
	}
	if i == start || i != len(s) {
		return 0, false
	}
	if overflow {
		return math.MaxUint64, true
	}
	if neg {
		v = -v
	}
	return v, true
}
