package erofs

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestDirentsInNameOrder checks the rule the regress trees of the corpus
// caught (testdata/conformance/composefs/regress): a directory's entries,
// "." and ".." included, are stored in byte-wise name order within and
// across its blocks, as the reference's strcmp sort leaves them. "." and
// ".." are not always neighbours: ".-x" or ".\x01" sort between them,
// "-x" before ".", ".a" after "..". Large directories span blocks, so a
// misplaced entry moves others from one block to the next.
func TestDirentsInNameOrder(t *testing.T) {
	between := []string{`.\x01`, `.\x20a`, `.-x`, `.+`, `.\x2d\x2d`}
	around := []string{`\x01`, `-x`, `.a`, `..b`, `.\xff`, `a`, `\xff`}
	for _, fill := range []int{0, 40, 400} {
		t.Run(fmt.Sprintf("fill%d", fill), func(t *testing.T) {
			var b strings.Builder
			b.WriteString(rootLine)
			b.WriteString("/d 0 40755 2 0 0 0 0.0 - - -\n")
			for _, dir := range []string{"", "/d"} {
				for _, n := range append(between, around...) {
					fmt.Fprintf(&b, "%s/%s 0 100644 1 0 0 0 0.0 - - -\n", dir, n)
				}
				for i := range fill {
					fmt.Fprintf(&b, "%s/.-%s-%03d 0 100644 1 0 0 0 0.0 - - -\n", dir, strings.Repeat("n", 40), i)
				}
			}
			img, _, err := buildImage([]byte(b.String()), true, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			im, err := Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			checkDirOrder(t, im, im.rootNid, "/")
		})
	}
}

// checkDirOrder checks the stored order of directory nid's entries and
// of its subdirectories'.
func checkDirOrder(t *testing.T, im *Image, nid uint64, path string) {
	t.Helper()
	ri, err := im.inode(nid)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := im.readDir(ri)
	if err != nil {
		t.Fatal(err)
	}
	dots := 0
	for i, e := range ents {
		if e.name == "." || e.name == ".." {
			dots++
		}
		if i > 0 && ents[i-1].name >= e.name {
			t.Fatalf("%s: entry %d %q stored after %q", path, i, e.name, ents[i-1].name)
		}
	}
	if dots != 2 {
		t.Fatalf(`%s: %d of "." and ".."`, path, dots)
	}
	for _, e := range ents {
		if e.typ == ftDir && e.name != "." && e.name != ".." {
			checkDirOrder(t, im, e.nid, path+e.name+"/")
		}
	}
}
