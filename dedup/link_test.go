package dedup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// srcState is everything InsertFile must leave unchanged on a source.
type srcState struct {
	mode        uint32
	uid, gid    uint32
	size        int64
	mtime       unix.Timespec
	xattrs      string
	contentHash Digest
}

func sourceState(t *testing.T, p string) srcState {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := unix.Listxattr(p, buf)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return srcState{st.Mode, st.Uid, st.Gid, st.Size, st.Mtim, string(buf[:max(n, 0)]), digestOf(data)}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// writeSource writes a source file with an unusual mode and an xattr,
// so that any change to either is visible.
func writeSource(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	unix.Setxattr(p, "user.test", []byte("keep"), 0) // best effort: not every fs has user xattrs
	return p
}

func TestInsertFileModes(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	srcDir := filepath.Join(filepath.Dir(s.Root()), "src")
	os.Mkdir(srcDir, 0o755)

	data := content(7, 70_000)
	p := writeSource(t, srcDir, "hard", data)
	before := sourceState(t, p)
	o, res, err := s.InsertFile(ctx, p, LinkAuto)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != LinkHardlink || res.Fallbacks != nil || o.Existed || o.Digest != digestOf(data) {
		t.Fatalf("auto on same fs: %+v %+v", o, res)
	}
	if inode(t, s.Path(o.Digest)) != inode(t, p) {
		t.Fatal("hard link is not the source inode")
	}
	if after := sourceState(t, p); after != before {
		t.Fatalf("source changed:\n%+v\n%+v", before, after)
	}
	o2, res, err := s.InsertFile(ctx, p, LinkCopy)
	if err != nil || !o2.Existed || res.Mode != LinkNone {
		t.Fatalf("present: %+v %+v %v", o2, res, err)
	}

	data = content(8, 5000)
	p = writeSource(t, srcDir, "copy", data)
	before = sourceState(t, p)
	o, res, err = s.InsertFile(ctx, p, LinkCopy)
	if err != nil || res.Mode != LinkCopy || o.Existed {
		t.Fatalf("copy: %+v %+v %v", o, res, err)
	}
	fi, _ := s.Stat(o.Digest)
	if inode(t, s.Path(o.Digest)) == inode(t, p) || fi.Mode().Perm() != objectMode {
		t.Fatalf("copy is not a new 0644 inode: %v", fi.Mode())
	}
	if after := sourceState(t, p); after != before {
		t.Fatalf("source changed by copy:\n%+v\n%+v", before, after)
	}
	if d, ok := s.LookupSHA256(o.SHA256); !ok || d != o.Digest {
		t.Fatal("InsertFile did not index the SHA-256")
	}

	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Shared.Objects != 1 || st.ByMode[LinkHardlink].Objects != 1 || st.ByMode[LinkCopy].Objects != 1 || st.DedupHits != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInsertFileFallbacks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	// /dev/shm is tmpfs: another file system than the store's.
	shm, err := os.MkdirTemp("/dev/shm", "dedup-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	if sameFS(t, shm, s.Root()) {
		t.Skip("/dev/shm is on the same file system as the test store")
	}
	data := content(9, 20_000)
	p := writeSource(t, shm, "f", data)
	before := sourceState(t, p)
	if _, _, err := s.InsertFile(ctx, p, LinkHardlink); !errors.Is(err, ErrLinkUnsupported) || !errors.Is(err, unix.EXDEV) {
		t.Fatalf("hard link across file systems: %v", err)
	}
	if _, _, err := s.InsertFile(ctx, p, LinkReflink); !errors.Is(err, ErrLinkUnsupported) {
		t.Fatalf("reflink across file systems: %v", err)
	}
	o, res, err := s.InsertFile(ctx, p, LinkAuto)
	if err != nil || res.Mode != LinkCopy || res.Fallbacks == nil || o.Digest != digestOf(data) {
		t.Fatalf("auto across file systems: %+v %+v %v", o, res, err)
	}
	if after := sourceState(t, p); after != before {
		t.Fatalf("source changed:\n%+v\n%+v", before, after)
	}
	if _, _, err := s.InsertFile(ctx, shm, LinkAuto); !errors.Is(err, ErrLinkUnsupported) {
		t.Fatalf("directory source: %v", err)
	}
	if _, _, err := s.InsertFile(ctx, filepath.Join(shm, "absent"), LinkAuto); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("absent source: %v", err)
	}
}

func sameFS(t *testing.T, a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		t.Fatal("stat")
	}
	return sa.Dev == sb.Dev
}

func digestOf(b []byte) Digest {
	var h = newHashers(false)
	h.Write(b)
	return Digest(h.verity.Sum32())
}
