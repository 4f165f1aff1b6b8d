package tests

import (
	"crypto/sha256"
	"io"

	"slices"
	"strings"
	"testing"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"

	_ "github.com/cfs-storage/cfs-storage/driver" // registers "cfs"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// layerTars is a three-layer image exercising what layers do to each
// other: whiteouts, opaque directories, a directory replaced by a file
// (with whiteouts under it), a file replaced by a directory, hard links,
// xattrs, a setuid file, devices, and contents repeated across layers.
func layerTars(t *testing.T) [][]byte {
	t.Helper()
	big := strings.Repeat("shared library bytes ", 400)
	layers := [][]tarfix.Entry{
		{
			tarfix.Dir("etc/"), tarfix.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), tarfix.File("etc/small", "s"),
			tarfix.Dir("usr/"), tarfix.Dir("usr/bin/"), tarfix.Dir("usr/lib/"),
			tarfix.FileMode("usr/bin/su", big+"su", 0o4755, 0, 0), tarfix.Hardlink("usr/bin/su-link", "usr/bin/su"),
			tarfix.WithXattrs(tarfix.File("usr/bin/ping", big+"ping"), "security.capability", "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "user.origin", "test"),
			tarfix.File("usr/lib/libc.so", big), tarfix.Hardlink("usr/lib/libc.so.6", "usr/lib/libc.so"),
			tarfix.Symlink("usr/lib/libc.so.link", "libc.so.6"),
			tarfix.Dir("dev/"), tarfix.Device("dev/null", '3', 1, 3), tarfix.Device("dev/fifo", '6', 0, 0),
			tarfix.Dir("opq/"), tarfix.File("opq/old", "old content of opq"), tarfix.Dir("opq/sub/"), tarfix.File("opq/sub/deep", "deep"),
			tarfix.Dir("replace-me/"), tarfix.File("replace-me/inner", "inner"),
			tarfix.File("becomes-dir", "a file for now"),
			tarfix.FileMode("owned", "owned by 1000", 0o640, 1000, 1000),
		},
		{
			tarfix.Dir("etc/"), tarfix.Whiteout("etc/", "small"), tarfix.File("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
			tarfix.Dir("opq/"), tarfix.Opaque("opq/"), tarfix.File("opq/new", "new in opq"),
			tarfix.File("replace-me", "now a file"),
			tarfix.Dir("becomes-dir/"), tarfix.File("becomes-dir/child", "child"),
			tarfix.Dir("usr/"), tarfix.Dir("usr/lib/"), tarfix.File("usr/lib/libcopy.so", big), // same content again
		},
		{
			tarfix.Dir("usr/"), tarfix.Dir("usr/lib/"), tarfix.Whiteout("usr/lib/", "libc.so"),
			tarfix.Dir("etc/"), tarfix.Dir("etc/small.d/"), tarfix.File("etc/small.d/x", "x under a deleted name"),
			tarfix.File("replace-me", "file again"), tarfix.Whiteout("replace-me/", "inner"),
		},
	}
	var out [][]byte
	for _, l := range layers {
		b, err := tarfix.Tar(l...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestStoreMatchesOverlay pulls the same layers into a c/storage store
// on cfs and on overlay, checks every layer's tar comes back with its
// original bytes, and compares the containers' mounted trees entry by
// entry.
func TestStoreMatchesOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	tars := layerTars(t)
	views := map[string][]string{}
	for _, driver := range []string{"overlay", "cfs"} {
		store := openStore(t, driver)
		parent := ""
		for _, tarball := range tars {
			parent = putLayers(t, store, parent, tarball)
			checkDiffRoundTrip(t, store, parent, tarball)
		}
		_, mnt, unmount := mountNewContainer(t, store, parent)
		view, err := testutil.ListTree(mnt)
		if err != nil {
			t.Fatal(err)
		}
		views[driver] = view[1:] // the root's mtime is its creation time
		unmount()
	}
	// A hard link whose sibling a later layer whited out: overlay shows
	// the lower inode's link count (2), cfs the links that remain (1).
	for _, line := range views["cfs"] {
		for path, want := range map[string]string{"usr/lib/libc.so.6 ": "nlink=1", "usr/bin/su ": "nlink=2", "usr/bin/su-link ": "nlink=2"} {
			if strings.HasPrefix(line, path) && !strings.Contains(line, want) {
				t.Errorf("cfs: %s: want %s", line, want)
			}
		}
	}
	views["overlay"] = withoutNlink(views["overlay"])
	views["cfs"] = withoutNlink(views["cfs"])
	if !slices.Equal(views["overlay"], views["cfs"]) {
		t.Fatalf("cfs container tree differs from overlay's:\n--- overlay\n%s\n--- cfs\n%s",
			strings.Join(views["overlay"], "\n"), strings.Join(views["cfs"], "\n"))
	}
	if len(views["cfs"]) < 20 {
		t.Fatalf("container tree has only %d entries: the layers did not land", len(views["cfs"]))
	}
}

// checkDiffRoundTrip asks the store for a layer's tar and compares it
// byte for byte with the tar it was made from (tar-split reassembles it
// from the driver's DiffGetter).
func checkDiffRoundTrip(t *testing.T, store storage.Store, id string, want []byte) {
	t.Helper()
	c := archive.Uncompressed
	rc, err := store.Diff("", id, &storage.DiffOptions{Compression: &c})
	if err != nil {
		t.Fatalf("diff %s: %v", id, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read diff %s: %v", id, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("layer %s: diff is %d bytes and differs from the %d bytes applied", id, len(got), len(want))
	}
}

func withoutNlink(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		fields := strings.Fields(l)
		fields = slices.DeleteFunc(fields, func(f string) bool { return strings.HasPrefix(f, "nlink=") })
		out[i] = strings.Join(fields, " ")
	}
	return out
}
