package dumpfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// FuzzParse feeds arbitrary text to the parser. Errors are fine; panics
// are bugs. Whatever parses must print as a dump that parses (strictly)
// back to a tree printing the same text.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(corpusDir(f), "*.dump"))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil && len(data) <= 64<<10 {
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

// corpusDir returns the conformance corpus directory seen from the
// repository root's parent; missing, it fails in CI and skips elsewhere.
func corpusDir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(wd, "..", "..", "..", "shared", "conformance", "composefs")
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("conformance corpus missing at %s: %v", dir, err)
		}
		t.Skipf("conformance corpus missing at %s: %v", dir, err)
	}
	return dir
}
