package erofs

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden compares a readable description of each spec example's image
// (header, superblock, every inode with its xattrs and dirents, then the
// composefs dump) with testdata/golden/NAME.txt. The images themselves are
// pinned by sha256 in TestSpecExamples; the golden text makes a layout
// change reviewable. Regenerate with -update.
func TestGolden(t *testing.T) {
	for _, ex := range specExamples() {
		t.Run(ex.name, func(t *testing.T) {
			img, _, err := buildImage([]byte(ex.dump), true, ex.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := describeImage(t, img)
			path := filepath.Join("testdata", "golden", ex.name+".txt")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("description differs from %s (run with -update after review):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)) && len(out) < 20; i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			out = append(out, fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, a, b))
		}
	}
	return strings.Join(out, "\n")
}

// describeImage renders an image readably: a debugging dumper whose output
// is also the golden format.
func describeImage(t testing.TB, img []byte) string {
	t.Helper()
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	sb := img[sbOffset:]
	fmt.Fprintf(&b, "image: %d bytes, composefs version %d, flags %#x\n", len(img), im.version, im.flags)
	fmt.Fprintf(&b, "superblock: root_nid %d inos %d build_time %d.%d blocks %d xattr_blkaddr %d\n",
		im.rootNid, im.inos, im.build.Sec, im.build.Nsec, le.Uint32(sb[offSbBlocks:]), im.xattrBlk)
	queue, seen := []uint64{im.rootNid}, map[uint64]bool{im.rootNid: true}
	stubs := 0
	for len(queue) > 0 {
		nid := queue[0]
		queue = queue[1:]
		ri, err := im.inode(nid)
		if err != nil {
			t.Fatal(err)
		}
		if isStub(ri) {
			stubs++
			continue
		}
		describeInode(t, &b, im, ri)
		if ri.typ() != tree.TypeDir {
			continue
		}
		ents, err := im.readDir(ri)
		if err != nil {
			t.Fatal(err)
		}
		nStub := 0
		for _, e := range ents {
			cri, err := im.inode(e.nid)
			if err != nil {
				t.Fatal(err)
			}
			if isStub(cri) {
				nStub++
			} else {
				fmt.Fprintf(&b, "    %s -> nid %d type %d\n", dumpfile.Escape(e.name), e.nid, e.typ)
			}
			if !seen[e.nid] {
				seen[e.nid] = true
				queue = append(queue, e.nid)
			}
		}
		if nStub > 0 {
			fmt.Fprintf(&b, "    (+ %d whiteout stub entries)\n", nStub)
		}
	}
	fmt.Fprintf(&b, "whiteout stubs: %d inodes\n", stubs)
	tr, err := im.Tree()
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("composefs dump:\n")
	if err := dumpfile.Write(&b, tr); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func isStub(ri *rawInode) bool { return ri.typ() == tree.TypeChar && ri.u == 0 }

func describeInode(t testing.TB, b *strings.Builder, im *Image, ri *rawInode) {
	layouts := map[uint16]string{layoutFlatPlain: "plain", layoutFlatInline: "inline", layoutChunkBased: "chunk"}
	kind := "compact"
	if ri.extended {
		kind = "extended"
	}
	fmt.Fprintf(b, "nid %d ino %d %s %s mode %o nlink %d size %d u %#x uid %d gid %d mtime %d.%d xattr-body %d\n",
		ri.nid, ri.ino, kind, layouts[ri.layout], ri.mode, ri.nlink, ri.size, ri.u, ri.uid, ri.gid,
		ri.mtime.Sec, ri.mtime.Nsec, ri.xattrSize)
	if ri.xattrSize > 0 {
		body := make([]byte, xattrIBodyHeaderSize)
		if err := im.readAt(body, ri.headEnd-ri.xattrSize); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(b, "    filter %#08x shared %d\n", le.Uint32(body[offXhNameFilter:]), body[offXhSharedCount])
	}
	xs, err := im.xattrs(ri)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range xs {
		v := dumpfile.Escape(string(x.Value))
		if len(v) > 80 {
			v = v[:80] + "…"
		}
		fmt.Fprintf(b, "    xattr %s=%s\n", x.Name, v)
	}
}
