package gvariant

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
)

func TestParseType(t *testing.T) {
	tests := []struct {
		sig          string
		align, fixed int
		wantErr      bool
	}{
		{sig: "y", align: 1, fixed: 1},
		{sig: "u", align: 4, fixed: 4},
		{sig: "t", align: 8, fixed: 8},
		{sig: "s", align: 1},
		{sig: "v", align: 8},
		{sig: "ay", align: 1},
		{sig: "au", align: 4},
		{sig: "mu", align: 4},
		{sig: "()", align: 1, fixed: 1},
		{sig: "(uy)", align: 4, fixed: 8},
		{sig: "(yu)", align: 4, fixed: 8},
		{sig: "(ty)", align: 8, fixed: 16},
		{sig: "(uuuusa(ayay))", align: 4},
		{sig: "(a{sv}aya(say)sstayay)", align: 8},
		{sig: "{sv}", align: 8},
		{sig: "", wantErr: true},
		{sig: "a", wantErr: true},
		{sig: "(u", wantErr: true},
		{sig: "uu", wantErr: true},
		{sig: "z", wantErr: true},
		{sig: "{vs}", wantErr: true},
		{sig: "{sss}", wantErr: true},
		{sig: "u)", wantErr: true},
	}
	for _, tt := range tests {
		typ, err := ParseType(tt.sig)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidType) {
				t.Errorf("ParseType(%q) error = %v, want ErrInvalidType", tt.sig, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseType(%q): %v", tt.sig, err)
			continue
		}
		if typ.String() != tt.sig || typ.Alignment() != tt.align || typ.FixedSize() != tt.fixed {
			t.Errorf("ParseType(%q) = %q align %d fixed %d, want align %d fixed %d",
				tt.sig, typ, typ.Alignment(), typ.FixedSize(), tt.align, tt.fixed)
		}
	}
}

func TestParseTypeDepth(t *testing.T) {
	deep := ""
	for i := 0; i < MaxDepth+2; i++ {
		deep += "a"
	}
	if _, err := ParseType(deep + "y"); !errors.Is(err, ErrInvalidType) {
		t.Errorf("deep type: error = %v, want ErrInvalidType", err)
	}
}

// golden lists values with their serialization as GLib writes it
// (examples from the GVariant specification and from ostree objects).
var golden = []struct {
	name string
	sig  string
	val  any
	data []byte
}{
	{"string", "s", "hello world", []byte("hello world\x00")},
	{"maybe string", "ms", Maybe{Valid: true, Value: "hello world"}, []byte("hello world\x00\x00")},
	{"nothing", "ms", Maybe{}, nil},
	{"maybe fixed", "mu", Maybe{Valid: true, Value: uint32(7)}, []byte{7, 0, 0, 0}},
	{"bool array", "ab", []any{true, true, false, true, true}, []byte{1, 1, 0, 1, 1}},
	{"string array", "as", []any{"i", "can", "has", "strings?"},
		[]byte("i\x00can\x00has\x00strings?\x00\x02\x06\x0a\x13")},
	{"array of arrays", "aay", []any{[]byte{}, []byte{1}, []byte{}},
		[]byte{1, 0x00, 0x01, 0x01}},
	{"tuple", "(si)", []any{"foo", int32(-1)},
		[]byte("foo\x00\xff\xff\xff\xff\x04")},
	{"array of tuples", "a(si)", []any{[]any{"foo", int32(-1)}, []any{"bar", int32(4)}},
		[]byte("foo\x00\xff\xff\xff\xff\x04\x00\x00\x00bar\x00\x04\x00\x00\x00\x04\x09\x15")},
	{"fixed tuple", "(yu)", []any{uint8(1), uint32(2)}, []byte{1, 0, 0, 0, 2, 0, 0, 0}},
	{"fixed tuple tail pad", "(uy)", []any{uint32(1), uint8(2)}, []byte{1, 0, 0, 0, 2, 0, 0, 0}},
	{"unit", "()", []any{}, []byte{0}},
	{"variant", "v", Variant{Type: MustParseType("u"), Value: uint32(7)},
		[]byte{7, 0, 0, 0, 0, 'u'}},
	{"dict", "a{sv}", []any{[]any{"k", Variant{Type: MustParseType("s"), Value: "v"}}},
		[]byte("k\x00\x00\x00\x00\x00\x00\x00v\x00\x00s\x02\x0d")},
	{"bytestring", "ay", []byte{0xde, 0xad}, []byte{0xde, 0xad}},
	{"empty tuple array", "a(ayay)", []any{}, nil},
	{"file header", "(uuuusa(ayay))", []any{uint32(0), uint32(0), be32(0o104755), uint32(0), "", []any{}},
		[]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x89, 0xed, 0, 0, 0, 0, 0, 0x11}},
	{"all basics", "(bynqiuxtd)", []any{true, uint8(2), int16(-3), uint16(4), int32(-5), uint32(6), int64(-7), uint64(8), 0.5},
		[]byte{1, 2, 0xfd, 0xff, 4, 0, 0, 0, 0xfb, 0xff, 0xff, 0xff, 6, 0, 0, 0,
			0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 8, 0, 0, 0, 0, 0, 0, 0,
			0, 0, 0, 0, 0, 0, 0xe0, 0x3f}},
}

// be32 returns the little-endian reading of x stored big-endian, as ostree
// stores uid, gid and mode.
func be32(x uint32) uint32 {
	return x>>24 | (x>>8)&0xff00 | (x<<8)&0xff0000 | x<<24
}

func TestGolden(t *testing.T) {
	for _, tt := range golden {
		t.Run(tt.name, func(t *testing.T) {
			typ := MustParseType(tt.sig)
			got, err := Decode(typ, tt.data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(tt.val)) {
				t.Errorf("Decode = %#v, want %#v", got, tt.val)
			}
			enc, err := Encode(typ, tt.val)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(enc, tt.data) {
				t.Errorf("Encode = % x, want % x", enc, tt.data)
			}
		})
	}
}

// normalize makes values comparable with reflect.DeepEqual: nil and empty
// byte slices are the same, and variant types compare by string.
func normalize(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalize(x[i])
		}
		return out
	case Maybe:
		return Maybe{Valid: x.Valid, Value: normalize(x.Value)}
	case Variant:
		return [2]any{x.Type.String(), normalize(x.Value)}
	}
	return v
}

func TestOstreeObjects(t *testing.T) {
	tests := []struct {
		file, sig string
		check     func(t *testing.T, v []any)
	}{
		{"ostree.commit", "(a{sv}aya(say)sstayay)", func(t *testing.T, v []any) {
			if len(v[1].([]byte)) != 0 || len(v[6].([]byte)) != 32 || len(v[7].([]byte)) != 32 {
				t.Errorf("commit parent/root sizes wrong: %v", v)
			}
			md := v[0].([]any)[0].([]any)
			if md[0] != "ostree.ref-binding" {
				t.Errorf("metadata key %q", md[0])
			}
		}},
		{"ostree.dirtree", "(a(say)a(sayay))", func(t *testing.T, v []any) {
			files, dirs := v[0].([]any), v[1].([]any)
			if len(files) != 3 || len(dirs) != 1 || dirs[0].([]any)[0] != "d1" {
				t.Errorf("dirtree = %d files, dirs %v", len(files), dirs)
			}
		}},
		{"ostree-xattr.dirmeta", "(uuua(ayay))", func(t *testing.T, v []any) {
			if be32(v[2].(uint32)) != 0o40755 {
				t.Errorf("mode %o", be32(v[2].(uint32)))
			}
			x := v[3].([]any)[0].([]any)
			if string(x[0].([]byte)) != "user.zz\x00" || string(x[1].([]byte)) != "2" {
				t.Errorf("xattr %q", x)
			}
		}},
		{"bare-user.ostreemeta", "(uuua(ayay))", func(t *testing.T, v []any) {
			if be32(v[0].(uint32)) != 1000 || be32(v[1].(uint32)) != 100 || len(v[3].([]any)) != 2 {
				t.Errorf("ostreemeta = %v", v)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			typ := MustParseType(tt.sig)
			v, err := Decode(typ, data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			tt.check(t, v.([]any))
			enc, err := Encode(typ, v)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(enc, data) {
				t.Errorf("re-encoded bytes differ:\n got % x\nwant % x", enc, data)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, sig string
		data      []byte
	}{
		{"short u", "u", []byte{1, 2}},
		{"long u", "u", []byte{1, 2, 3, 4, 5}},
		{"bad bool", "b", []byte{2}},
		{"string without NUL", "s", []byte("abc")},
		{"string inner NUL", "s", []byte("a\x00c\x00")},
		{"empty string data", "s", nil},
		{"fixed array size", "au", []byte{1, 2, 3}},
		{"array offset past end", "as", []byte("a\x00\x09")},
		{"array offset table misaligned", "as", []byte("ab\x00\x01")},
		{"array element backwards", "as", []byte("a\x00b\x00\x04\x02")},
		{"tuple offset past end", "(sy)", []byte("a\x00\x07\x09")},
		{"tuple too short for offsets", "(ss)", nil},
		{"maybe variable no NUL", "ms", []byte("ab")},
		{"maybe fixed wrong size", "mu", []byte{1, 2}},
		{"variant no NUL", "v", []byte("abc")},
		{"variant bad type", "v", []byte("\x00z")},
		{"variant two types", "v", []byte{1, 0, 'y', 'y'}},
		{"unit not zero", "()", []byte{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Decode(MustParseType(tt.sig), tt.data)
			if !errors.Is(err, ErrInvalidData) {
				t.Errorf("Decode = %#v, %v; want ErrInvalidData", v, err)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		sig string
		val any
	}{
		{"u", int32(1)},
		{"s", 5},
		{"s", "a\x00b"},
		{"ay", []any{uint8(1)}},
		{"(uu)", []any{uint32(1)}},
		{"v", "x"},
		{"ms", "x"},
		{"au", []any{"x"}},
	}
	for _, tt := range tests {
		if _, err := Encode(MustParseType(tt.sig), tt.val); !errors.Is(err, ErrValueMismatch) {
			t.Errorf("Encode(%s, %#v) error = %v, want ErrValueMismatch", tt.sig, tt.val, err)
		}
	}
}

// TestOffsetWidths checks containers large enough to need 2- and 4-byte
// framing offsets round-trip, with the width GLib would choose.
func TestOffsetWidths(t *testing.T) {
	typ := MustParseType("aay")
	for _, n := range []int{10, 200, 300, 70000} {
		items := make([]any, 4)
		for i := range items {
			items[i] = bytes.Repeat([]byte{byte(i)}, n)
		}
		enc, err := Encode(typ, items)
		if err != nil {
			t.Fatal(err)
		}
		body := 4 * n
		wantW := offsetSize(body + 4)
		if body+4*1 > 255 {
			wantW = offsetSize(body + 4*2)
		}
		if body+4*2 > 65535 {
			wantW = 4
		}
		if got := len(enc) - body; got != 4*wantW {
			t.Errorf("n=%d: offsets take %d bytes, want %d", n, got, 4*wantW)
		}
		dec, err := Decode(typ, enc)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !reflect.DeepEqual(dec, items) {
			t.Errorf("n=%d: round trip differs", n)
		}
	}
}

// TestDecodeAllocBounded checks hostile inputs that claim many elements
// allocate in proportion to their size only.
func TestDecodeAllocBounded(t *testing.T) {
	big := make([]byte, 1<<16)
	inputs := []struct {
		sig  string
		data []byte
	}{
		{"a()", big},
		{"aay", big},
		{"au", big},
		{"a(ayay)", big},
		{"aas", bytes.Repeat([]byte{0xff}, 1<<16)},
		{"av", bytes.Repeat([]byte("\x00()"), 1<<14)},
	}
	for _, in := range inputs {
		typ := MustParseType(in.sig)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _ = Decode(typ, in.data)
		runtime.ReadMemStats(&after)
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(64*len(in.data)+1<<16); got > limit {
			t.Errorf("%s: %d bytes allocated for %d input bytes (limit %d)", in.sig, got, len(in.data), limit)
		}
	}
}
