package corpus

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func mkfiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	if err := writeFiles(root, files); err != nil {
		t.Fatal(err)
	}
}

// TestDiffLayer checks the layer between two snapshots: changed and new
// files with their parent directories, whiteouts only at the top of a
// removed subtree, whole hard-link groups, and type changes.
func TestDiffLayer(t *testing.T) {
	root := t.TempDir()
	mkfiles(t, root, map[string]string{
		"etc/keep": "same", "etc/change": "v1", "usr/lib/gone/a": "a", "usr/lib/gone/b": "b",
		"usr/bin/rm-me": "x", "becomes-dir": "file", "srv/untouched/f": "f",
	})
	old, err := scan(root)
	if err != nil {
		t.Fatal(err)
	}
	mkfiles(t, root, map[string]string{"etc/change": "v2", "opt/new/file": "new", "opt/new/linked": "shared"})
	if err := os.Link(filepath.Join(root, "opt/new/linked"), filepath.Join(root, "opt/link2")); err != nil {
		t.Fatal(err)
	}
	if err := removePaths(root, "usr/lib/gone", "usr/bin/rm-me", "becomes-dir"); err != nil {
		t.Fatal(err)
	}
	mkfiles(t, root, map[string]string{"becomes-dir/child": "c"})
	snap, err := scan(root)
	if err != nil {
		t.Fatal(err)
	}
	changes := diff(old, snap)
	var got []string
	for _, c := range changes {
		got = append(got, c.path)
	}
	want := []string{"becomes-dir", "becomes-dir/child", "etc", "etc/change", "opt", "opt/link2", "opt/new",
		"opt/new/file", "opt/new/linked", "usr", "usr/bin", "usr/bin/.wh.rm-me", "usr/lib", "usr/lib/.wh.gone"}
	if !slices.Equal(got, want) {
		t.Fatalf("layer entries:\n got %q\nwant %q", got, want)
	}
	var buf bytes.Buffer
	if err := (layerWriter{root: root, snap: snap, epoch: epoch}).write(&buf, changes); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	types := map[string]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types[hdr.Name] = hdr.Typeflag
		if hdr.ModTime.After(epoch) {
			t.Errorf("%s: mtime %v not clamped to %v", hdr.Name, hdr.ModTime, epoch)
		}
	}
	if types["opt/link2"] != tar.TypeReg || types["opt/new/linked"] != tar.TypeLink {
		t.Errorf("hard-link group: want opt/link2 regular and opt/new/linked a link to it, got %q %q", types["opt/link2"], types["opt/new/linked"])
	}
	if types["becomes-dir/"] != tar.TypeDir || types["usr/lib/.wh.gone"] != tar.TypeReg {
		t.Errorf("want becomes-dir/ a directory and a whiteout file for usr/lib/gone, got %v", types)
	}
}
