package dumpfile

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/tree"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// FuzzParse feeds arbitrary text to the parser. Errors are fine; panics
// are bugs. Whatever parses must print as a dump that parses (strictly)
// back to a tree printing the same text.
func FuzzParse(f *testing.F) {
	for _, c := range testutil.CorpusCases(f) {
		if strings.HasSuffix(c.Name, ".gz") {
			continue // the large trees: too slow as seeds
		}
		if data := testutil.ReadCorpusFile(f, c.Path); len(data) <= 64<<10 {
			f.Add(data, false)
			f.Add(data, true)
		}
	}
	for _, tc := range parseCases {
		f.Add([]byte(tc.in), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, strict bool) {
		tr, err := Parse(bytes.NewReader(data), Options{Strict: strict})
		if err != nil {
			if tr != nil {
				t.Fatalf("tree returned with error %v", err)
			}
			return
		}
		if hasDirLink(tr) {
			return // directory hard links print as unparsable "@40..." lines, as in composefs-info
		}
		var d1 bytes.Buffer
		if err := Write(&d1, tr); err != nil {
			t.Fatal(err)
		}
		tr2, err := Parse(bytes.NewReader(d1.Bytes()), Options{Strict: true})
		if err != nil {
			t.Fatalf("printed dump does not parse: %v\n%s", err, d1.Bytes())
		}
		var d2 bytes.Buffer
		if err := Write(&d2, tr2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d1.Bytes(), d2.Bytes()) {
			t.Fatalf("print/parse/print differs:\n%s\n---\n%s", d1.Bytes(), d2.Bytes())
		}
	})
}

// hasDirLink reports whether t has a hard-link entry to a directory.
func hasDirLink(t *tree.Tree) bool {
	found := false
	_ = t.Walk(func(p string, d tree.Dirent) error {
		found = found || (d.HardLink && d.Node.IsDir())
		return nil
	})
	return found
}
