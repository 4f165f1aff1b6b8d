package erofs

import (
	"bytes"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// sampleTree builds a tree with every file type, hard links, xattrs,
// external files and a whiteout.
func sampleTree(t testing.TB) *tree.Tree {
	t.Helper()
	tr := tree.New()
	tr.Root.Mtime = tree.Time{Sec: 1700000000, Nsec: 5}
	add := func(p string, n *tree.Node) {
		if n.Nlink == 0 {
			n.Nlink = 1
		}
		if err := tr.Insert(p, n); err != nil {
			t.Fatal(err)
		}
	}
	d := tree.NewDir(0o750)
	d.UID, d.GID = 1000, 100
	d.Mtime = tree.Time{Sec: 1700000001}
	add("/dir", d)
	add("/dir/inline", &tree.Node{Mode: tree.TypeReg | 0o644, Size: 5, Content: []byte("hello"), Mtime: tree.Time{Sec: 1700000002, Nsec: 7}})
	big := bytes.Repeat([]byte("0123456789abcdef"), 300) // 4800 bytes: a block and a tail
	add("/dir/bigger", &tree.Node{Mode: tree.TypeReg | 0o600, Size: uint64(len(big)), Content: big, UID: 70000, GID: 70001})
	digest := [32]byte{1, 2, 3}
	add("/ext", &tree.Node{Mode: tree.TypeReg | 0o755, Size: 11, Payload: "ab/cdef", Digest: &digest, Xattrs: []tree.Xattr{{Name: "user.k", Value: []byte("v")}}})
	add("/empty", &tree.Node{Mode: tree.TypeReg | 0o644})
	add("/link", &tree.Node{Mode: tree.TypeSymlink | 0o777, Target: "dir/inline", Size: 10})
	add("/abslink", &tree.Node{Mode: tree.TypeSymlink | 0o777, Target: "/dir", Size: 4})
	add("/null", &tree.Node{Mode: tree.TypeChar | 0o666, Rdev: 259})
	add("/sda", &tree.Node{Mode: tree.TypeBlock | 0o660, Rdev: 2048})
	add("/fifo", &tree.Node{Mode: tree.TypeFifo | 0o644})
	add("/sock", &tree.Node{Mode: tree.TypeSocket | 0o755})
	add("/dir/gone", &tree.Node{Mode: tree.TypeChar})
	add("/sel", &tree.Node{Mode: tree.TypeReg | 0o644, Xattrs: []tree.Xattr{
		{Name: "security.selinux", Value: []byte("system_u:object_r:etc_t:s0")},
		{Name: "trusted.overlay.opaque", Value: []byte("y")},
		{Name: "user.a=b", Value: []byte("x y")},
	}})
	if err := tr.Link("/dir/hard", "/dir/inline"); err != nil {
		t.Fatal(err)
	}
	return tr
}

func writeImage(t testing.TB, tr *tree.Tree, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tr, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFS(t *testing.T) {
	img := writeImage(t, sampleTree(t), DefaultOptions())
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	objects := fstest.MapFS{"ab/cdef": {Data: []byte("hello world")}}
	fsys := im.WithObjects(objects)
	if err := fstest.TestFS(fsys, "dir/inline", "dir/bigger", "ext", "link", "null", "dir/hard"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{"dir/inline", "hello"},
		{"link", "hello"},
		{"abslink/inline", "hello"},
		{"ext", "hello world"},
	}
	for _, tc := range tests {
		got, err := fs.ReadFile(fsys, tc.path)
		if err != nil || string(got) != tc.want {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
	if _, err := fs.ReadFile(im, "ext"); err == nil {
		t.Errorf("reading an external file without objects succeeded")
	}
	fi, err := fs.Stat(fsys, "dir/bigger")
	if err != nil {
		t.Fatal(err)
	}
	info := fi.Sys().(*InodeInfo)
	if info.UID != 70000 || info.GID != 70001 || fi.Mode() != 0o600 || fi.Size() != 4800 {
		t.Errorf("bigger: uid %d gid %d mode %v size %d", info.UID, info.GID, fi.Mode(), fi.Size())
	}
	// The raw view shows the escaped whiteout and the user's escaped xattr.
	xs, err := im.Xattrs("dir/gone")
	if err != nil {
		t.Fatal(err)
	}
	if !hasXattr(xs, xattrEscWhiteout) {
		t.Errorf("dir/gone raw xattrs %v lack %s", xs, xattrEscWhiteout)
	}
	if xs, _ := im.Xattrs("sel"); !hasXattr(xs, "trusted.overlay.overlay.opaque") {
		t.Errorf("sel raw xattrs %v lack the escaped opaque", xs)
	}
}

func hasXattr(xs []tree.Xattr, name string) bool {
	for _, x := range xs {
		if x.Name == name {
			return true
		}
	}
	return false
}

// TestImageConcurrent reads one Image from several goroutines (run with
// -race): Image is documented as safe for concurrent use.
func TestImageConcurrent(t *testing.T) {
	img := writeImage(t, mountTreeForFS(t), DefaultOptions())
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			_, err := im.Tree()
			if err == nil {
				err = fs.WalkDir(im, ".", func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					_, err = d.Info()
					return err
				})
			}
			done <- err
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func mountTreeForFS(t *testing.T) *tree.Tree {
	tr, _ := mountTree(t)
	return tr
}
