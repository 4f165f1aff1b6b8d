package erofs

import (
	"bytes"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// imageDump opens an image and prints its composefs view.
func imageDump(t testing.TB, img []byte) []byte {
	t.Helper()
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	tr, err := im.Tree()
	if err != nil {
		t.Fatalf("tree: %v", err)
	}
	var out bytes.Buffer
	if err := dumpfile.Write(&out, tr); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestRoundTrip checks, for every corpus image and spec example: dump →
// image1 → dump1 → image2 → dump2 gives image2 == image1 and dump2 ==
// dump1 (composefs-info's output fed back to mkcomposefs reproduces the
// image) when every hard-linked node's primary entry is the first one met
// in depth-first name order. Otherwise the dump, as the reference's
// composefs-info prints it, makes the first entry met the primary: the
// node moves in BFS order (and a whiteout's marked parent with it), as it
// does with the reference; the regress trees of the corpus are such
// trees. Then one more round must change nothing.
func TestRoundTrip(t *testing.T) {
	type rt struct {
		name   string
		dump   []byte
		strict bool
		opts   Options
	}
	var cases []rt
	for _, c := range corpusCases(t) {
		if c.sha256 != "" {
			cases = append(cases, rt{c.name, testutil.ReadCorpusFile(t, c.path), c.strict, c.options()})
		}
	}
	for _, ex := range specExamples() {
		cases = append(cases, rt{ex.name, []byte(ex.dump), true, ex.opts})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img1, tr, err := buildImage(c.dump, c.strict, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			dump1 := imageDump(t, img1)
			img2, _, err := buildImage(dump1, true, c.opts)
			if err != nil {
				t.Fatalf("rebuild from dump: %v", err)
			}
			dump2 := imageDump(t, img2)
			if !testutil.PrimariesFirst(tr) {
				t.Logf("a hard link is met before its primary entry: checking the second round")
				img3, _, err := buildImage(dump2, true, c.opts)
				if err != nil {
					t.Fatalf("rebuild from second dump: %v", err)
				}
				img1, img2, dump1, dump2 = img2, img3, dump2, imageDump(t, img3)
			}
			if !bytes.Equal(img1, img2) {
				t.Errorf("image from re-parsed dump differs (%d vs %d bytes)", len(img1), len(img2))
			}
			if !bytes.Equal(dump1, dump2) {
				t.Errorf("second dump differs")
			}
		})
	}
}
