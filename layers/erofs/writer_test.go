package erofs

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// TestWriteErrors checks the trees the writer must reject.
func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name  string
		dump  string
		build func(*tree.Tree)
		opts  Options
		want  error
	}{
		{name: "external above 2^53", dump: rootLine + "/f 9007199254740993 100644 1 0 0 0 0.0 - - -\n", want: ErrFileTooLarge},
		{name: "version 2", dump: rootLine, opts: Options{MaxVersion: 2}, want: ErrInvalidVersion},
		{name: "min above max 1", dump: rootLine, opts: Options{MinVersion: 2}, want: ErrInvalidVersion},
		// §6.6: replacing the user's escaped whiteout xattr with a longer
		// cost than the write-time counter holds wraps the budget.
		{name: "budget wrap", dump: rootLine + "/w 0 20000 1 0 0 0 0.0 - - - trusted.overlay.whiteout=1 user.x=y\n", want: ErrInvalidTree},
		{name: "invalid mode", build: func(tr *tree.Tree) {
			_ = tr.Insert("/x", &tree.Node{Mode: 0o170644})
		}, want: ErrInvalidTree},
		{name: "content size mismatch", build: func(tr *tree.Tree) {
			_ = tr.Insert("/x", &tree.Node{Mode: tree.TypeReg | 0o644, Size: 4, Content: []byte("abc")})
		}, want: ErrInvalidTree},
		{name: "empty symlink", build: func(tr *tree.Tree) {
			_ = tr.Insert("/x", &tree.Node{Mode: tree.TypeSymlink | 0o777})
		}, want: ErrInvalidTree},
		{name: "hard link outside the tree", build: func(tr *tree.Tree) {
			_ = tr.Root.Insert(tree.Dirent{Name: "x", Node: &tree.Node{Mode: tree.TypeReg}, HardLink: true})
		}, want: ErrInvalidTree},
		{name: "xattr value too long", build: func(tr *tree.Tree) {
			_ = tr.Insert("/x", &tree.Node{Mode: tree.TypeReg, Xattrs: []tree.Xattr{{Name: "user.v", Value: make([]byte, 65536)}}})
		}, want: ErrInvalidTree},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.build != nil {
				tr := tree.New()
				tc.build(tr)
				err = Write(io.Discard, tr, tc.opts)
			} else {
				_, _, err = buildImage([]byte(tc.dump), true, tc.opts)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// The largest external file: exactly 2^53 bytes, 1024 chunks.
	if _, _, err := buildImage([]byte(rootLine+"/f 9007199254740992 100644 1 0 0 0 0.0 - - -\n"), true, DefaultOptions()); err != nil {
		t.Errorf("2^53-byte external file: %v", err)
	}
	// The same whiteout with an empty old value does not wrap (§6.6).
	if _, _, err := buildImage([]byte(rootLine+"/w 0 20000 1 0 0 0 0.0 - - - trusted.overlay.whiteout= user.x=y\n"), true, DefaultOptions()); err != nil {
		t.Errorf("empty user whiteout xattr: %v", err)
	}
}

// TestStubNameCollision checks §4.4: a root entry named like a stub
// replaces that stub.
func TestStubNameCollision(t *testing.T) {
	img, _, err := buildImage([]byte(rootLine+"/0a 0 40755 2 0 0 0 0.0 - - -\n/ff 0 100644 1 0 0 0 0.0 - - -\n"), true, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if got := im.Inodes(); got != 1+254+2 {
		t.Errorf("inodes = %d, want 257 (root, 254 stubs, 2 files)", got)
	}
	desc := describeImage(t, img)
	for _, want := range []string{"0a -> nid", "ff -> nid", "(+ 254 whiteout stub entries)"} {
		if !strings.Contains(desc, want) {
			t.Errorf("description lacks %q:\n%s", want, desc)
		}
	}
}

// TestDirectoryHardLink covers the §12.6 quirk: a non-directory "@" line
// may name a directory (here the root, via an empty target): the image
// gets a dirent of type 2 to that directory and no new inode, and the
// composefs view shows a hard-link entry.
func TestDirectoryHardLink(t *testing.T) {
	img, _, err := buildImage([]byte(rootLine+"/d 0 40755 2 0 0 0 0.0 - - -\n/d/up 0 @100644 0 0 0 0 0.0  - -\n"), true, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	desc := describeImage(t, img)
	if !strings.Contains(desc, "up -> nid 36 type 2") {
		t.Errorf("no directory dirent to the root:\n%s", desc)
	}
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := im.Tree()
	if err != nil {
		t.Fatal(err)
	}
	d, err := tr.Lookup("/d")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := d.Entry("up"); !ok || !e.HardLink || e.Node != tr.Root {
		t.Errorf("d/up = %+v, want a hard link to the root", e)
	}
}
