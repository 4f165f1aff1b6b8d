package dumpfile

import (
	"errors"
	"fmt"
)

// Escape errors, wrapped in a *ParseError.
var (
	errNoEscapeChar = errors.New("No character after escape")
	errNoHex        = errors.New("No hex characters after hex escape")
	errBadHex       = errors.New("Invalid hex characters after hex escape")
)

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescape decodes the dumpfile escapes (\\ \n \r \t \xHH) in s. The result
// aliases s when s holds no backslash.
func unescape(s []byte) ([]byte, error) {
	i := indexByte(s, '\\')
	if i < 0 {
		return s, nil
	}
	out := make([]byte, i, len(s))
	copy(out, s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, errNoEscapeChar
		}
		i++
		switch s[i] {
		case '\\':
			out = append(out, '\\')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'x':
			if i+2 >= len(s) {
				return nil, errNoHex
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return nil, errBadHex
			}
			out = append(out, hi<<4|lo)
			i += 2
		default:
			return nil, fmt.Errorf("Unsupported escape type %c", s[i])
		}
	}
	return out, nil
}

func indexByte(s []byte, c byte) int {
	for i, b := range s {
		if b == c {
			return i
		}
	}
	return -1
}

// cString truncates b at its first NUL, as C string handling does.
func cString(b []byte) []byte {
	if i := indexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// escapeMode selects the escaping rules of one dump field.
type escapeMode int

const (
	escPlain    escapeMode = iota // paths
	escLoneDash                   // PAYLOAD, CONTENT: a lone "-" becomes \x2d
	escXattr                      // xattr keys and values: '=' becomes \x3d
)

const hexDigits = "0123456789abcdef"

// appendEscaped appends s escaped as composefs-info dump writes it.
func appendEscaped(dst []byte, s string, mode escapeMode) []byte {
	if mode == escLoneDash && s == "-" {
		return append(dst, `\x2d`...)
	}
	if !needsEscape(s, mode) {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			dst = append(dst, `\\`...)
		case c == '\n':
			dst = append(dst, `\n`...)
		case c == '\r':
			dst = append(dst, `\r`...)
		case c == '\t':
			dst = append(dst, `\t`...)
		case c == '=' && mode == escXattr, c < 0x21, c > 0x7e:
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func needsEscape(s string, mode escapeMode) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' || c < 0x21 || c > 0x7e || (c == '=' && mode == escXattr) {
			return true
		}
	}
	return false
}

// Escape returns s escaped with the dump's rules for paths (every byte
// outside 0x21..0x7e, and backslash, is escaped).
func Escape(s string) string {
	return string(appendEscaped(nil, s, escPlain))
}
