package tests

import (
	"archive/tar"
	"os"
	"path/filepath"
	"testing"
	"time"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

var (
	t2001 = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	t2024 = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
)

// impliedTars are two layers: the first has directories of its own (a/
// with mode 0700, owner 1000, an xattr; usr/ and usr/bin/), all dated
// 2001; the second adds files below them and below new paths without
// a single directory entry, as many image builders write layers.
func impliedTars(t *testing.T) [][]byte {
	t.Helper()
	a := tarfix.WithXattrs(tarfix.Entry{Header: tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 1000, Gid: 1000, ModTime: t2001}}, "user.x", "lower")
	dir2001 := func(name string) tarfix.Entry {
		e := tarfix.Dir(name)
		e.Header.ModTime = t2001
		return e
	}
	newFile := tarfix.File("n/m/f", "f")
	newFile.Header.ModTime = t2024
	l1, err := tarfix.Tar(a, tarfix.File("a/old", "old"), dir2001("usr/"), dir2001("usr/bin/"), tarfix.File("usr/bin/sh", "sh"))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := tarfix.Tar(tarfix.File("a/b", "b"), tarfix.File("usr/bin/x", "x"), newFile)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{l1, l2}
}

type dirView struct {
	mode, uid, gid uint32
	mtime          time.Time
	xattr          string
}

func statDir(t *testing.T, p string) dirView {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	v := dirView{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: time.Unix(st.Mtim.Sec, 0).UTC()}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(p, "user.x", buf); err == nil {
		v.xattr = string(buf[:n])
	}
	return v
}

// TestImpliedDirsMatchOverlay (issue 14): a directory a layer has no
// entry of its own for shows, on cfs as on c/storage's overlay driver,
// mode 0755, owner 0:0 and no xattrs, hiding the lower directory's. Its
// mtime on overlay is the moment the layer was extracted; cfs keeps the
// lower directory's mtime instead (and for a new directory its newest
// entry's), never 1970. A container layer committed after writing in
// such a directory carries no 1970 mtime either.
func TestImpliedDirsMatchOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	tars := impliedTars(t)
	views := map[string]map[string]dirView{}
	for _, driver := range []string{"overlay", "cfs"} {
		store := openStore(t, driver)
		top := putLayers(t, store, "", tars...)
		ctr, mnt, unmount := mountNewContainer(t, store, top)
		views[driver] = map[string]dirView{}
		for _, p := range []string{"a", "usr", "usr/bin", "n", "n/m"} {
			views[driver][p] = statDir(t, filepath.Join(mnt, p))
		}
		if driver == "cfs" {
			// A file written in usr/bin copies usr up unchanged.
			if err := os.WriteFile(filepath.Join(mnt, "usr", "bin", "new"), []byte("new"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		unmount()
		if driver == "cfs" {
			checkCommittedMtimes(t, store, ctr.LayerID)
		}
	}
	for p, o := range views["overlay"] {
		c := views["cfs"][p]
		t.Logf("%s: overlay %o %d:%d %s xattr=%q; cfs %o %d:%d %s xattr=%q", p, o.mode, o.uid, o.gid, o.mtime, o.xattr, c.mode, c.uid, c.gid, c.mtime, c.xattr)
		if c.mode != o.mode || c.uid != o.uid || c.gid != o.gid || c.xattr != o.xattr {
			t.Errorf("%s: cfs shows %o %d:%d xattr %q, overlay %o %d:%d xattr %q", p, c.mode, c.uid, c.gid, c.xattr, o.mode, o.uid, o.gid, o.xattr)
		}
		if o.mode != unix.S_IFDIR|0o755 || o.uid != 0 || o.xattr != "" {
			t.Errorf("%s: overlay no longer shows an implied directory as 0755 root without xattrs: the README and layers.Merge say it does", p)
		}
	}
	for p, want := range map[string]time.Time{"a": t2001, "usr": t2001, "usr/bin": t2001, "n": t2024, "n/m": t2024} {
		if got := views["cfs"][p].mtime; !got.Equal(want) {
			t.Errorf("cfs: %s: mtime %s, want %s", p, got, want)
		}
	}
}

// checkCommittedMtimes reads the container layer's diff (podman commit)
// and checks no entry is dated 1970 and usr/, copied up untouched,
// keeps its 2001 mtime.
func checkCommittedMtimes(t *testing.T, store storage.Store, layer string) {
	t.Helper()
	c := archive.Uncompressed
	rc, err := store.Diff("", layer, &storage.DiffOptions{Compression: &c})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hs, err := tarfix.Headers(rc)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]time.Time{}
	for _, h := range hs {
		seen[h.Name] = h.ModTime
		if h.ModTime.Unix() == 0 {
			t.Errorf("committed layer: %s is dated 1970", h.Name)
		}
	}
	if got, ok := seen["usr/"]; !ok || !got.Equal(t2001) {
		t.Errorf("committed layer: usr/ dated %s (present %v), want %s; entries %v", got, ok, t2001, seen)
	}
}
