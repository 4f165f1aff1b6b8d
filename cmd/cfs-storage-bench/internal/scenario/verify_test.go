package scenario

import (
	"archive/tar"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// layerBlob writes a gzip tar of hdrs (regular files get size bytes of
// 'x') and returns its path.
func layerBlob(t *testing.T, hdrs ...*tar.Header) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "layer-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(strings.Repeat("x", int(h.Size))))
		}
	}
	tw.Close()
	zw.Close()
	return f.Name()
}

func dir(name string) *tar.Header {
	return &tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755}
}
func file(name string, size int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}
}

// TestExpectedTree checks the tree the check expects from layers: a
// directory replacing a file, whiteouts under it, an opaque directory, a
// file replacing a directory with its subtree, and a hard link.
func TestExpectedTree(t *testing.T) {
	layers := []string{
		layerBlob(t, dir("opt"), file("opt/item", 3), dir("etc"), dir("etc/conf"), file("etc/conf/a", 1), dir("var"), file("var/x", 1), dir("srv"), dir("srv/sub"), file("srv/sub/f", 2)),
		layerBlob(t, dir("opt"), dir("opt/item"), file("opt/item/a", 1), file("opt/item/b", 1), file("opt/item/c", 1),
			dir("var"), file("var/.wh..wh..opq", 0), file("var/y", 4),
			file("srv", 5), &tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "var/y"}),
		layerBlob(t, dir("opt"), dir("opt/item"), file("opt/item/.wh.a", 0), file("opt/item/.wh.b", 0), file(".wh.etc", 0)),
	}
	tree := map[string]entry{}
	for _, l := range layers {
		if err := applyLayer(tree, l); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for p, e := range tree {
		got = append(got, p+" "+e.String())
	}
	want := map[string]string{
		"opt":        "dir 755 0:0",
		"opt/item":   "dir 755 0:0",
		"opt/item/c": "file 644 0:0 1 bytes",
		"var":        "dir 755 0:0",
		"var/y":      "file 644 0:0 4 bytes",
		"srv":        "file 644 0:0 5 bytes",
		"hard":       "file 644 0:0 4 bytes",
	}
	if len(tree) != len(want) {
		t.Errorf("tree %q, want %v", got, want)
	}
	for p, w := range want {
		if e, ok := tree[p]; !ok || e.String() != w {
			t.Errorf("%s: %v, want %s", p, e, w)
		}
	}

	// The check's report: what is extra, missing and different.
	gotTree := map[string]entry{}
	for p, e := range tree {
		gotTree[p] = e
	}
	delete(gotTree, "opt/item/c")
	gotTree["opt/item/.wh.a"] = entry{typ: tar.TypeReg, mode: 0o644}
	gotTree["var/y"] = entry{typ: tar.TypeReg, mode: 0o600, size: 4}
	lines, n := treeDiff(tree, gotTree, 2)
	if n != 3 || len(lines) != 2 {
		t.Fatalf("treeDiff: %d differences, lines %q; want 3 and 2 lines", n, lines)
	}
	if !strings.Contains(lines[0], "/opt/item/.wh.a is there (file 644 0:0 0 bytes) but not in the image") ||
		!strings.Contains(lines[1], "/opt/item/c missing") {
		t.Errorf("treeDiff lines %q", lines)
	}
	if _, n := treeDiff(tree, tree, 2); n != 0 {
		t.Errorf("a tree differs from itself in %d paths", n)
	}
}

// TestActualTree checks the listing of a real folder matches what the
// check expects of the same entries.
func TestActualTree(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "opt/item"), 0o755)
	os.WriteFile(filepath.Join(root, "opt/item/c"), []byte("c"), 0o644)
	os.Chmod(filepath.Join(root, "opt/item/c"), 0o644)
	os.Symlink("opt/item/c", filepath.Join(root, "link"))
	tree, err := actualTree(root)
	if err != nil {
		t.Fatal(err)
	}
	if e := tree["opt/item/c"]; e.String() != "file 644 0:0 1 bytes" {
		t.Errorf("opt/item/c: %v", e)
	}
	if e := tree["link"]; e.String() != "symlink 0:0 -> opt/item/c" {
		t.Errorf("link: %v", e)
	}
	if len(tree) != 4 {
		t.Errorf("tree has %d entries, want 4: %v", len(tree), tree)
	}
}

// TestDataOnlyLowers counts composefs lowers in overlay mount options,
// named by path or by file descriptor.
func TestDataOnlyLowers(t *testing.T) {
	opts := []string{
		"rw,lowerdir=/s/ctr/composefs-layers/1:/s/ctr/composefs-layers/2::/s/a/diff::/s/b/diff,upperdir=/s/ctr/diff,workdir=/s/ctr/work",
		"rw,lowerdir=5:8:9::29::30::31,upperdir=/u,workdir=/w",
		"rw,lowerdir=/s/l/A:/s/l/B,upperdir=/u,workdir=/w",
	}
	if n := dataOnlyLowers(opts); n != 5 {
		t.Errorf("dataOnlyLowers = %d, want 5", n)
	}
	if got := unescapeMount(`/a\040b\134c`); got != `/a b\c` {
		t.Errorf("unescapeMount = %q", got)
	}
}
