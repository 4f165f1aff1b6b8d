package gvariant

import (
	"fmt"
)

// MaxDepth bounds the nesting of containers in a type string, as GLib
// does (G_VARIANT_MAX_RECURSION_DEPTH is 128), so that hostile variant
// type strings cannot exhaust the stack.
const MaxDepth = 64

// Type is a parsed GVariant type string with its serialization
// properties (alignment and fixed size) precomputed. A Type is
// immutable and safe for concurrent use.
type Type struct {
	sig   string
	kind  byte    // 'b','y',…,'s','a','m','(','{','v'
	elems []*Type // array/maybe element, tuple or dict-entry members
	align int     // alignment in bytes: 1, 2, 4 or 8
	fixed int     // fixed serialized size, 0 for variable-size types
}

// String returns the type string, for example "(uuuusa(ayay))".
func (t *Type) String() string { return t.sig }

// Kind returns the first character of the type string: the basic type
// code, 'a' for arrays, 'm' for maybes, '(' for tuples, '{' for dict
// entries, 'v' for variants.
func (t *Type) Kind() byte { return t.kind }

// Elem returns the element type of an array or maybe type, nil otherwise.
func (t *Type) Elem() *Type {
	if t.kind == 'a' || t.kind == 'm' {
		return t.elems[0]
	}
	return nil
}

// Fields returns the member types of a tuple or dict-entry type.
func (t *Type) Fields() []*Type {
	if t.kind == '(' || t.kind == '{' {
		return t.elems
	}
	return nil
}

// Alignment returns the type's alignment in bytes.
func (t *Type) Alignment() int { return t.align }

// FixedSize returns the serialized size of a fixed-size type, or 0 for a
// variable-size type.
func (t *Type) FixedSize() int { return t.fixed }

// basicSize returns the size (= alignment) of a fixed-size basic type
// code, or 0 for any other code.
func basicSize(c byte) int {
	switch c {
	case 'b', 'y':
		return 1
	case 'n', 'q':
		return 2
	case 'i', 'u', 'h':
		return 4
	case 'x', 't', 'd':
		return 8
	}
	return 0
}

// isBasic reports whether c is a basic type code, usable as a dict key.
func isBasic(c byte) bool {
	return basicSize(c) != 0 || c == 's' || c == 'o' || c == 'g'
}

// ParseType parses one complete GVariant type string.
func ParseType(sig string) (*Type, error) {
	t, rest, err := parseOne(sig, 0)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidType, sig, err)
	}
	if rest != "" {
		return nil, fmt.Errorf("%w %q: trailing %q", ErrInvalidType, sig, rest)
	}
	return t, nil
}

// MustParseType is ParseType for type strings known at compile time; it
// panics on an invalid type string.
func MustParseType(sig string) *Type {
	t, err := ParseType(sig)
	if err != nil {
		panic(err)
	}
	return t
}

// parseOne parses the first complete type of s and returns the rest.
func parseOne(s string, depth int) (*Type, string, error) {
	if depth > MaxDepth {
		return nil, "", fmt.Errorf("nested deeper than %d", MaxDepth)
	}
	if s == "" {
		return nil, "", fmt.Errorf("unexpected end")
	}
	c := s[0]
	if size := basicSize(c); size != 0 {
		return &Type{sig: s[:1], kind: c, align: size, fixed: size}, s[1:], nil
	}
	switch c {
	case 's', 'o', 'g':
		return &Type{sig: s[:1], kind: c, align: 1}, s[1:], nil
	case 'v':
		return &Type{sig: "v", kind: 'v', align: 8}, s[1:], nil
	case 'a', 'm':
		e, rest, err := parseOne(s[1:], depth+1)
		if err != nil {
			return nil, "", err
		}
		// Arrays and maybes are variable-size (an empty array and
		// Nothing are both zero bytes), aligned like their element.
		t := &Type{sig: s[:len(s)-len(rest)], kind: c, elems: []*Type{e}, align: e.align}
		return t, rest, nil
	case '(', '{':
		return parseTuple(s, depth)
	}
	return nil, "", fmt.Errorf("unknown type code %q", c)
}

// parseTuple parses a tuple "(…)" or dict entry "{kv}" at the start of s.
func parseTuple(s string, depth int) (*Type, string, error) {
	open := s[0]
	closer := byte(')')
	if open == '{' {
		closer = '}'
	}
	t := &Type{kind: open, align: 1}
	rest := s[1:]
	for {
		if rest == "" {
			return nil, "", fmt.Errorf("unterminated %q", open)
		}
		if rest[0] == closer {
			rest = rest[1:]
			break
		}
		e, r, err := parseOne(rest, depth+1)
		if err != nil {
			return nil, "", err
		}
		t.elems = append(t.elems, e)
		rest = r
	}
	if open == '{' && (len(t.elems) != 2 || !isBasic(t.elems[0].kind)) {
		return nil, "", fmt.Errorf("dict entry needs a basic key and one value")
	}
	t.sig = s[:len(s)-len(rest)]
	t.fixed = tupleFixedSize(t)
	return t, rest, nil
}

// tupleFixedSize computes the fixed size of a tuple whose members are all
// fixed-size (0 otherwise), and sets its alignment.
func tupleFixedSize(t *Type) int {
	off := 0
	fixed := true
	for _, e := range t.elems {
		t.align = max(t.align, e.align)
		if e.fixed == 0 {
			fixed = false
		}
		off = alignUp(off, e.align) + e.fixed
	}
	if !fixed {
		return 0
	}
	if off == 0 {
		return 1 // the unit tuple "()" is one zero byte
	}
	return alignUp(off, t.align)
}

// alignUp rounds off up to a multiple of align (a power of two).
func alignUp(off, align int) int {
	return (off + align - 1) &^ (align - 1)
}
