// Package gvariant decodes and encodes GLib's GVariant serialization
// format, for the subset of types that ostree's on-disk objects use:
// fixed-size basic types, strings, arrays (bytestrings "ay" included),
// maybes, tuples, dict entries and variants.
//
// The format (GLib's gvariant-serialiser.c and the GVariant paper): every
// value is aligned to its type's alignment relative to the start of its
// container; fixed-size values are stored as is (little-endian); strings
// end in a NUL byte; variable-size array elements and all but the last
// variable-size tuple member are located by framing offsets stored at the
// end of the container, little-endian, 0, 1, 2, 4 or 8 bytes wide
// depending on the container's total size; a variant is its value, a NUL
// byte and its type string.
//
// Decoding returns plain Go values:
//
//	b bool, y uint8, n int16, q uint16, i int32, u uint32, h int32,
//	x int64, t uint64, d float64, s/o/g string, ay []byte,
//	other arrays []any, tuples and dict entries []any, m… Maybe,
//	v Variant.
//
// Encode takes the same values. The decoder is strict: data that GLib
// would read as a default value (non-normal form with out-of-range
// offsets, missing NUL terminators, wrong fixed sizes) is an error. It
// never panics on hostile input and allocates at most in proportion to
// the input size.
//
// ostree stores some integers big-endian inside these little-endian
// containers (uid, gid and mode in file and directory metadata, the
// commit timestamp); this package returns the raw little-endian reading
// and leaves the byte swap to the caller.
package gvariant
