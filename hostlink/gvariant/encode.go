package gvariant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Encode serializes v as a value of type t, in normal form (the form GLib
// produces, so that checksums over the bytes agree with GLib's). v uses the
// Go types that Decode returns; for "ay" a []byte, for other arrays and
// for tuples a []any.
func Encode(t *Type, v any) ([]byte, error) {
	return encode(nil, t, v)
}

// mismatch builds an ErrValueMismatch error.
func mismatch(t *Type, v any) error {
	return fmt.Errorf("%w: %T for %s", ErrValueMismatch, v, t.sig)
}

// encode appends the serialization of v to dst. Alignment is relative to
// len(dst) at entry being a multiple of t's alignment, which containers
// guarantee by padding before each child.
func encode(dst []byte, t *Type, v any) ([]byte, error) {
	switch t.kind {
	case 's', 'o', 'g':
		s, ok := v.(string)
		if !ok {
			return nil, mismatch(t, v)
		}
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				return nil, fmt.Errorf("%w: string with an inner NUL", ErrValueMismatch)
			}
		}
		return append(append(dst, s...), 0), nil
	case 'v':
		vv, ok := v.(Variant)
		if !ok || vv.Type == nil {
			return nil, mismatch(t, v)
		}
		out, err := encode(dst, vv.Type, vv.Value)
		if err != nil {
			return nil, err
		}
		return append(append(out, 0), vv.Type.sig...), nil
	case 'm':
		return encodeMaybe(dst, t, v)
	case 'a':
		return encodeArray(dst, t, v)
	case '(', '{':
		return encodeTuple(dst, t, v)
	}
	return encodeBasic(dst, t, v)
}

// encodeBasic appends a fixed-size basic value, little-endian.
func encodeBasic(dst []byte, t *Type, v any) ([]byte, error) {
	le := binary.LittleEndian
	switch x := v.(type) {
	case bool:
		if t.kind == 'b' {
			if x {
				return append(dst, 1), nil
			}
			return append(dst, 0), nil
		}
	case uint8:
		if t.kind == 'y' {
			return append(dst, x), nil
		}
	case int16:
		if t.kind == 'n' {
			return le.AppendUint16(dst, uint16(x)), nil
		}
	case uint16:
		if t.kind == 'q' {
			return le.AppendUint16(dst, x), nil
		}
	case int32:
		if t.kind == 'i' || t.kind == 'h' {
			return le.AppendUint32(dst, uint32(x)), nil
		}
	case uint32:
		if t.kind == 'u' {
			return le.AppendUint32(dst, x), nil
		}
	case int64:
		if t.kind == 'x' {
			return le.AppendUint64(dst, uint64(x)), nil
		}
	case uint64:
		if t.kind == 't' {
			return le.AppendUint64(dst, x), nil
		}
	case float64:
		if t.kind == 'd' {
			return le.AppendUint64(dst, math.Float64bits(x)), nil
		}
	}
	return nil, mismatch(t, v)
}

func encodeMaybe(dst []byte, t *Type, v any) ([]byte, error) {
	m, ok := v.(Maybe)
	if !ok {
		return nil, mismatch(t, v)
	}
	if !m.Valid {
		return dst, nil
	}
	out, err := encode(dst, t.elems[0], m.Value)
	if err != nil {
		return nil, err
	}
	if t.elems[0].fixed == 0 {
		out = append(out, 0)
	}
	return out, nil
}

// pad appends zero bytes to dst until (len(dst)-base) is a multiple of
// align.
func pad(dst []byte, base, align int) []byte {
	for (len(dst)-base)%align != 0 {
		dst = append(dst, 0)
	}
	return dst
}

// appendOffsets appends the framing offsets (relative to base) of a
// container whose body is dst[base:], choosing the width as GLib does:
// the smallest that can address the whole container including the
// offsets themselves.
func appendOffsets(dst []byte, base int, offs []int) []byte {
	if len(offs) == 0 {
		return dst
	}
	body := len(dst) - base
	w := 8
	for _, c := range []int{1, 2, 4} {
		if uint64(body+c*len(offs)) <= uint64(1)<<(8*c)-1 {
			w = c
			break
		}
	}
	for _, o := range offs {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(o))
		dst = append(dst, b[:w]...)
	}
	return dst
}

func encodeArray(dst []byte, t *Type, v any) ([]byte, error) {
	e := t.elems[0]
	if e.kind == 'y' {
		b, ok := v.([]byte)
		if !ok {
			return nil, mismatch(t, v)
		}
		return append(dst, b...), nil
	}
	items, ok := v.([]any)
	if !ok {
		return nil, mismatch(t, v)
	}
	base := len(dst)
	var offs []int
	var err error
	for _, it := range items {
		dst = pad(dst, base, e.align)
		if dst, err = encode(dst, e, it); err != nil {
			return nil, err
		}
		if e.fixed == 0 {
			offs = append(offs, len(dst)-base)
		}
	}
	return appendOffsets(dst, base, offs), nil
}

func encodeTuple(dst []byte, t *Type, v any) ([]byte, error) {
	items, ok := v.([]any)
	if !ok || len(items) != len(t.elems) {
		return nil, mismatch(t, v)
	}
	if len(t.elems) == 0 {
		return append(dst, 0), nil
	}
	base := len(dst)
	var offs []int
	var err error
	for i, e := range t.elems {
		dst = pad(dst, base, e.align)
		if dst, err = encode(dst, e, items[i]); err != nil {
			return nil, err
		}
		if e.fixed == 0 && i != len(t.elems)-1 {
			offs = append(offs, len(dst)-base)
		}
	}
	if t.fixed != 0 {
		return pad(dst, base, t.align), nil
	}
	// Tuple offsets are stored in reverse order.
	for i, j := 0, len(offs)-1; i < j; i, j = i+1, j-1 {
		offs[i], offs[j] = offs[j], offs[i]
	}
	return appendOffsets(dst, base, offs), nil
}
