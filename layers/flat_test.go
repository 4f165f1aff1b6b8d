package layers

import (
	"archive/tar"
	"bytes"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/erofs"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// TestIsFlat checks IsFlat against what it claims: a tree it calls flat
// is written byte for byte as the image Merge onto an empty tree and
// FixLinks make of it, and the trees it refuses really change.
func TestIsFlat(t *testing.T) {
	whiteout := entry{hdr: tar.Header{Name: "etc/.wh.gone", Typeflag: tar.TypeReg}}
	opaque := entry{hdr: tar.Header{Name: "etc/.wh..wh..opq", Typeflag: tar.TypeReg}}
	base := []entry{dir("etc/"), reg("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), dir("usr/"), dir("usr/bin/"),
		reg("usr/bin/tool", "a binary big enough to be stored outside"), hardlink("usr/bin/alias", "usr/bin/tool"),
		symlink("usr/bin/link", "tool"), reg("usr/bin/empty", "")}
	for _, tc := range []struct {
		name    string
		entries []entry
		flat    bool
	}{
		{"base layer", base, true},
		{"hard links in another directory", append(append([]entry{}, base...), dir("sbin/"), hardlink("sbin/tool", "usr/bin/tool")), true},
		{"whiteout", append(append([]entry{}, base...), whiteout), false},
		{"opaque directory", append(append([]entry{}, base...), opaque), false},
		{"implied directory", []entry{reg("opt/app/run", "no directory entries above")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := ingest(t, newMemContents(), tc.entries...)
			if got := IsFlat(tr); got != tc.flat {
				t.Fatalf("IsFlat = %v, want %v", got, tc.flat)
			}
			flat := tree.New()
			if err := Merge(flat, tr.Clone()); err != nil {
				t.Fatal(err)
			}
			FixLinks(flat)
			same := bytes.Equal(image(t, tr), image(t, flat))
			if tc.flat && !same {
				t.Error("IsFlat says flat, but the flattened image differs from the layer's")
			}
			if !tc.flat && same {
				t.Error("the flattened image is the layer's: IsFlat should say so")
			}
		})
	}
}

func image(t *testing.T, tr *tree.Tree) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := erofs.Write(&b, tr, erofs.Options{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
