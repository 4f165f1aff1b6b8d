package dedup

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// mountXFS makes a sparse XFS image with reflink, attaches it to a loop
// device and mounts it; everything is undone in cleanups.
func mountXFS(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	mkfs := testutil.RequireTool(t, "mkfs.xfs")
	losetup := testutil.RequireTool(t, "losetup")
	dir := t.TempDir()
	img := filepath.Join(dir, "xfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(320 << 20)
	f.Close()
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	out, err := exec.Command(losetup, "--find", "--show", img).Output()
	if err != nil {
		testutil.Unavailable(t, "losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command(losetup, "-d", dev).Run() })
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	testutil.Mount(t, dev, mnt, "xfs", 0, "")
	return mnt
}

// TestReflinkAcrossBindMounts reproduces the Fedora CoreOS situation:
// the host files are on the same file system as the store but reached
// through another mount, so link(2) fails with EXDEV while FICLONE works.
func TestReflinkAcrossBindMounts(t *testing.T) {
	mnt := mountXFS(t)
	ctx := context.Background()
	host := filepath.Join(mnt, "host")
	os.Mkdir(host, 0o755)
	view := filepath.Join(filepath.Dir(mnt), "hostview")
	os.Mkdir(view, 0o755)
	testutil.Mount(t, host, view, "", unix.MS_BIND, "")

	s, err := Open(filepath.Join(mnt, "store"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := content(11, 1<<20+123)
	p := writeSource(t, view, "obj", data)
	before := sourceState(t, p)
	if _, _, err := s.InsertFile(ctx, p, LinkHardlink); !errors.Is(err, unix.EXDEV) {
		t.Fatalf("hard link across bind mounts: %v, want EXDEV", err)
	}
	o, res, err := s.InsertFile(ctx, p, LinkAuto)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != LinkReflink || !errors.Is(res.Fallbacks, unix.EXDEV) || o.Digest != digestOf(data) {
		t.Fatalf("auto: %+v %+v", o, res)
	}
	if inode(t, s.Path(o.Digest)) == inode(t, p) {
		t.Fatal("reflink shares the source inode")
	}
	if after := sourceState(t, p); after != before {
		t.Fatalf("source changed:\n%+v\n%+v", before, after)
	}
	// Through the file system's own mount, a hard link works.
	p2 := writeSource(t, host, "obj2", content(12, 9000))
	o2, res, err := s.InsertFile(ctx, p2, LinkAuto)
	if err != nil || res.Mode != LinkHardlink || inode(t, s.Path(o2.Digest)) != inode(t, p2) {
		t.Fatalf("hard link on one mount: %+v %v", res, err)
	}
	p3 := writeSource(t, host, "obj3", content(13, 9000))
	if _, res, err := s.InsertFile(ctx, p3, LinkReflink); err != nil || res.Mode != LinkReflink {
		t.Fatalf("explicit reflink: %+v %v", res, err)
	}
	rep, err := s.Fsck(ctx, FsckOptions{})
	if err != nil || !rep.Clean() || rep.Checked != 3 {
		t.Fatalf("fsck: %+v %v", rep, err)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.ByMode[LinkReflink].Objects != 2 || st.ByMode[LinkHardlink].Objects != 1 {
		t.Fatalf("stats: %+v %v", st, err)
	}
}
