package gvariant

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary type strings and bytes to the decoder. Errors
// are fine; panics are bugs. Whatever decodes must re-encode, and the
// encoding must be stable: encode(decode(encode(v))) == encode(v).
func FuzzDecode(f *testing.F) {
	for _, g := range golden {
		f.Add(g.sig, g.data)
	}
	seeds := map[string]string{
		"ostree.commit":        "(a{sv}aya(say)sstayay)",
		"ostree.dirtree":       "(a(say)a(sayay))",
		"ostree-xattr.dirmeta": "(uuua(ayay))",
		"bare-user.ostreemeta": "(uuua(ayay))",
	}
	for file, sig := range seeds {
		data, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sig, data)
		f.Add("v", append(append(data, 0), sig...))
	}
	f.Fuzz(func(t *testing.T, sig string, data []byte) {
		typ, err := ParseType(sig)
		if err != nil {
			return
		}
		v, err := Decode(typ, data)
		if err != nil {
			return
		}
		enc, err := Encode(typ, v)
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		v2, err := Decode(typ, enc)
		if err != nil {
			t.Fatalf("encoding does not decode: %v\n% x", err, enc)
		}
		enc2, err := Encode(typ, v2)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable encoding:\n% x\n% x", enc, enc2)
		}
	})
}
