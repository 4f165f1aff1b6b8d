package layers

import (
	"slices"
	"testing"
)

func TestChanges(t *testing.T) {
	m := newMemContents()
	old := ingest(t, m, dir("a/b/c/"), reg("a/b/c/f", "x"), reg("keep", "k"), reg("mod", "old"), dir("gone/"), reg("gone/inner", "i"), reg("chmod", "c"))
	chmod := reg("chmod", "c")
	chmod.hdr.Mode = 0o600
	newer := ingest(t, m, dir("a/b/c/"), reg("keep", "k"), reg("mod", "new!"), chmod, dir("added/sub/"), reg("added/sub/f", "f"))
	got := Changes(old, newer)
	want := []Change{
		{"/a", ChangeModify}, {"/a/b", ChangeModify}, {"/a/b/c", ChangeModify}, {"/a/b/c/f", ChangeDelete},
		{"/added", ChangeAdd}, {"/added/sub", ChangeAdd}, {"/added/sub/f", ChangeAdd},
		{"/chmod", ChangeModify}, {"/mod", ChangeModify}, {"/gone", ChangeDelete},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Changes:\n got %v\nwant %v", got, want)
	}
	if c := Changes(old, old); len(c) != 0 {
		t.Fatalf("a tree differs from itself: %v", c)
	}
}

func TestDiffSizeCountsLinksOnce(t *testing.T) {
	tr := ingest(t, newMemContents(), reg("a", "12345"), hardlink("b", "a"), reg("c", "123"), symlink("s", "target"))
	if got := DiffSize(tr); got != 8 {
		t.Fatalf("DiffSize = %d, want 8", got)
	}
}
