package gvariant

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrInvalidType reports a malformed GVariant type string.
	ErrInvalidType = errors.New("gvariant: invalid type string")
	// ErrInvalidData reports serialized bytes that are not a valid
	// (normal-form) serialization of the expected type.
	ErrInvalidData = errors.New("gvariant: invalid serialized data")
	// ErrValueMismatch reports a Go value that Encode cannot serialize as
	// the requested type.
	ErrValueMismatch = errors.New("gvariant: value does not match type")
)

// Maybe is the decoded form of a maybe type ("m…"): Valid is false for
// Nothing.
type Maybe struct {
	Valid bool
	Value any
}

// Variant is the decoded form of the variant type "v": a value together
// with its own type.
type Variant struct {
	Type  *Type
	Value any
}

// Decode decodes data as a serialized value of type t. See the package
// documentation for the Go types returned.
func Decode(t *Type, data []byte) (any, error) {
	return decode(t, data, 0)
}

// invalid builds an ErrInvalidData error for type t.
func invalid(t *Type, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidData, t.sig, fmt.Sprintf(format, args...))
}

func decode(t *Type, b []byte, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, invalid(t, "nested deeper than %d", MaxDepth)
	}
	if t.fixed != 0 && len(b) != t.fixed {
		return nil, invalid(t, "size %d, want %d", len(b), t.fixed)
	}
	switch t.kind {
	case 's', 'o', 'g':
		if len(b) == 0 || bytes.IndexByte(b, 0) != len(b)-1 {
			return nil, invalid(t, "string not NUL-terminated or with an inner NUL")
		}
		return string(b[:len(b)-1]), nil
	case 'v':
		return decodeVariant(t, b, depth)
	case 'm':
		return decodeMaybe(t, b, depth)
	case 'a':
		return decodeArray(t, b, depth)
	case '(', '{':
		return decodeTuple(t, b, depth)
	}
	return decodeBasic(t, b)
}

// decodeBasic decodes a fixed-size basic value (length already checked).
func decodeBasic(t *Type, b []byte) (any, error) {
	le := binary.LittleEndian
	switch t.kind {
	case 'b':
		if b[0] > 1 {
			return nil, invalid(t, "boolean byte %d", b[0])
		}
		return b[0] == 1, nil
	case 'y':
		return b[0], nil
	case 'n':
		return int16(le.Uint16(b)), nil
	case 'q':
		return le.Uint16(b), nil
	case 'i', 'h':
		return int32(le.Uint32(b)), nil
	case 'u':
		return le.Uint32(b), nil
	case 'x':
		return int64(le.Uint64(b)), nil
	case 't':
		return le.Uint64(b), nil
	case 'd':
		return math.Float64frombits(le.Uint64(b)), nil
	}
	return nil, invalid(t, "unsupported type")
}

func decodeVariant(t *Type, b []byte, depth int) (any, error) {
	i := bytes.LastIndexByte(b, 0)
	if i < 0 {
		return nil, invalid(t, "no NUL before the type string")
	}
	sig := string(b[i+1:])
	vt, err := ParseType(sig)
	if err != nil {
		return nil, invalid(t, "child type: %v", err)
	}
	v, err := decode(vt, b[:i], depth+1)
	if err != nil {
		return nil, err
	}
	return Variant{Type: vt, Value: v}, nil
}

func decodeMaybe(t *Type, b []byte, depth int) (any, error) {
	if len(b) == 0 {
		return Maybe{}, nil
	}
	e := t.elems[0]
	if e.fixed == 0 {
		if b[len(b)-1] != 0 {
			return nil, invalid(t, "Just of a variable-size value lacks its NUL")
		}
		b = b[:len(b)-1]
	}
	v, err := decode(e, b, depth+1)
	if err != nil {
		return nil, err
	}
	return Maybe{Valid: true, Value: v}, nil
}

// offsetSize is the width of framing offsets in a container of size n.
func offsetSize(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= math.MaxUint8:
		return 1
	case n <= math.MaxUint16:
		return 2
	case uint64(n) <= math.MaxUint32:
		return 4
	}
	return 8
}

// readOffset reads a little-endian framing offset of width w at b[0:w].
func readOffset(b []byte, w int) uint64 {
	switch w {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

func decodeArray(t *Type, b []byte, depth int) (any, error) {
	e := t.elems[0]
	if e.kind == 'y' {
		return bytes.Clone(b), nil
	}
	if len(b) == 0 {
		return []any{}, nil
	}
	if e.fixed != 0 {
		if len(b)%e.fixed != 0 {
			return nil, invalid(t, "size %d not a multiple of %d", len(b), e.fixed)
		}
		out := make([]any, 0, len(b)/e.fixed)
		for off := 0; off < len(b); off += e.fixed {
			v, err := decode(e, b[off:off+e.fixed], depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	w := offsetSize(len(b))
	last := readOffset(b[len(b)-w:], w)
	if last > uint64(len(b)-w) || (uint64(len(b))-last)%uint64(w) != 0 {
		return nil, invalid(t, "bad framing offset %d in %d bytes", last, len(b))
	}
	table := b[last:]
	n := len(table) / w
	out := make([]any, 0, n)
	start := 0
	for i := 0; i < n; i++ {
		end := readOffset(table[i*w:], w)
		start = alignUp(start, e.align)
		if uint64(start) > end || end > last {
			return nil, invalid(t, "element %d spans %d..%d of %d", i, start, end, last)
		}
		v, err := decode(e, b[start:end], depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		start = int(end)
	}
	return out, nil
}

func decodeTuple(t *Type, b []byte, depth int) (any, error) {
	if len(t.elems) == 0 {
		if b[0] != 0 {
			return nil, invalid(t, "unit byte %d", b[0])
		}
		return []any{}, nil
	}
	w := offsetSize(len(b))
	nOff := 0
	for i, e := range t.elems {
		if e.fixed == 0 && i != len(t.elems)-1 {
			nOff++
		}
	}
	if nOff*w > len(b) || (nOff > 0 && w == 0) {
		return nil, invalid(t, "%d framing offsets do not fit in %d bytes", nOff, len(b))
	}
	tableStart := uint64(len(b) - nOff*w)
	out := make([]any, 0, len(t.elems))
	pos, k := 0, 0
	for i, e := range t.elems {
		pos = alignUp(pos, e.align)
		var end uint64
		switch {
		case e.fixed != 0:
			end = uint64(pos + e.fixed)
		case i == len(t.elems)-1:
			end = tableStart
		default:
			k++
			end = readOffset(b[len(b)-k*w:], w)
		}
		if uint64(pos) > end || end > tableStart {
			return nil, invalid(t, "member %d spans %d..%d of %d", i, pos, end, tableStart)
		}
		v, err := decode(e, b[pos:end], depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		pos = int(end)
	}
	return out, nil
}
