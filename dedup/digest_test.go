package dedup

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestObjectPath checks the "xx/yyyy…" layout, and that Store.Path is
// the objects directory joined with it.
func TestObjectPath(t *testing.T) {
	d, err := ParseDigest(strings.Repeat("0123456789abcdef", 4))
	if err != nil {
		t.Fatal(err)
	}
	want := "01/" + strings.Repeat("0123456789abcdef", 4)[2:]
	if got := ObjectPath(d); got != want {
		t.Fatalf("ObjectPath = %q, want %q", got, want)
	}
	s := openTest(t, Options{})
	if got := s.Path(d); got != filepath.Join(s.ObjectsDir(), want) {
		t.Errorf("Path = %q, want %q under %s", got, want, s.ObjectsDir())
	}
}
