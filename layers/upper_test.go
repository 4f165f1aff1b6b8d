package layers

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/layers/erofs"
	"github.com/cfs-storage/cfs-storage/layers/tree"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestFromUpperRealOverlay makes changes through a real writable overlay
// over a composefs lower (new files, a chmod that copies up metadata only,
// deletions, a directory replaced, a directory renamed), reads the upper
// directory back as a layer tree, merges it onto the lower tree, and
// checks the result equals what the mounted overlay showed.
func TestFromUpperRealOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	m := newMemContents()
	lower := ingest(t, m,
		dir("etc/"), reg("etc/big.conf", "a configuration file larger than the inline limit"),
		reg("etc/small", "s"), reg("etc/rm-me", "remove this file please"),
		dir("opq/"), reg("opq/old", "old content here"),
		dir("ren/sub/"), reg("ren/sub/f", "file in a renamed dir"), reg("ren/g", "another file in renamed"),
	)
	work := t.TempDir()
	objects, image := filepath.Join(work, "objects"), filepath.Join(work, "lower.cfs")
	for payload, data := range m.objects {
		p := filepath.Join(objects, payload)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(image)
	if err != nil {
		t.Fatal(err)
	}
	if err := erofs.Write(f, lower, erofs.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	erofsMnt, upper, wd, merged := filepath.Join(work, "e"), filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "merged")
	for _, d := range []string{erofsMnt, upper, wd, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.MountErofs(t, image, erofsMnt)
	testutil.MountOverlay(t, testutil.Overlay{Lower: []string{erofsMnt}, DataLower: []string{objects}, Upper: upper, Work: wd}, merged)

	in := func(p string) string { return filepath.Join(merged, p) }
	must(t, os.WriteFile(in("etc/new"), []byte("a brand new file with some content"), 0o640))
	must(t, os.Chmod(in("etc/big.conf"), 0o600)) // metacopy copy-up
	must(t, os.Remove(in("etc/rm-me")))
	must(t, os.RemoveAll(in("opq")))
	must(t, os.Mkdir(in("opq"), 0o700))
	must(t, os.WriteFile(in("opq/fresh"), []byte("fresh"), 0o644))
	must(t, os.Rename(in("ren"), in("renamed"))) // redirect_dir
	must(t, os.WriteFile(in("renamed/added"), []byte("added after rename"), 0o644))
	must(t, os.Symlink("etc/new", in("link")))
	must(t, unix.Mkfifo(in("fifo"), 0o600))
	must(t, os.MkdirAll(in("newdir/sub"), 0o755)) // nothing below: no opaque mark in the diff
	must(t, os.WriteFile(in("newdir/sub/f"), []byte("f"), 0o644))
	must(t, os.Mkdir(in("etc/newsub"), 0o755))
	if v, err := getXattrOK(filepath.Join(upper, "etc/big.conf"), metacopyXattr); err != nil {
		t.Fatalf("chmod did not leave a metacopy upper file (%v, %q): the test no longer covers metacopy", err, v)
	}

	want, err := FromUpper(ctx, merged, nil, m, IngestOptions{InlineLimit: 8})
	if err != nil {
		t.Fatalf("read merged view: %v", err)
	}
	testutil.Unmount(t, merged)

	diff, err := FromUpper(ctx, upper, lower, m, IngestOptions{InlineLimit: 8})
	if err != nil {
		t.Fatalf("FromUpper: %v", err)
	}
	if wh, err := diff.Lookup("etc/rm-me"); err != nil || !wh.IsWhiteout() {
		t.Errorf("deleted file is not a whiteout in the layer tree: %v", err)
	}
	for p, opaque := range map[string]bool{"opq": true, "newdir": false, "newdir/sub": false, "etc/newsub": false} {
		n, err := diff.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, got := n.Xattr(OpaqueXattr); got != opaque {
			t.Errorf("%s: opaque in the layer tree = %v, want %v (a mark belongs only where a lower directory is hidden)", p, got, opaque)
		}
	}
	got := lower.Clone()
	if err := Merge(got, diff); err != nil {
		t.Fatal(err)
	}
	FixLinks(got)
	// The merged view's root is the upper root; compare entries only.
	want.Root.Mtime, got.Root.Mtime = tree.Time{}, tree.Time{}
	if a, b := listing(t, want, m), listing(t, got, m); a != b {
		t.Fatalf("lower + FromUpper(upper) differs from the overlay's view:\n--- overlay\n%s\n--- merged trees\n%s", a, b)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func getXattrOK(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
