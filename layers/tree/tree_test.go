package tree

import (
	"errors"
	"strings"
	"testing"
)

func reg(size uint64) *Node { return &Node{Mode: TypeReg | 0o644, Nlink: 1, Size: size} }

func TestInsertLookupRemove(t *testing.T) {
	tr := New()
	if _, err := tr.Mkdir("/a/b"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/a/b/z", "/a/b/m", "a/b/c", "//a/b/x/"} {
		if err := tr.Insert(p, reg(1)); err != nil {
			t.Fatalf("insert %s: %v", p, err)
		}
	}
	b, err := tr.Lookup("a/b")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range b.Entries() {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, ","); got != "c,m,x,z" {
		t.Errorf("entries = %s, want c,m,x,z", got)
	}
	tests := []struct {
		name string
		err  error
		fn   func() error
	}{
		{"dup", ErrExist, func() error { return tr.Insert("/a/b/c", reg(1)) }},
		{"missing parent", ErrNotExist, func() error { return tr.Insert("/q/r", reg(1)) }},
		{"parent not dir", ErrNotDir, func() error { return tr.Insert("/a/b/c/d", reg(1)) }},
		{"dot", ErrInvalidName, func() error { return tr.Insert("/a/.", reg(1)) }},
		{"dotdot", ErrInvalidName, func() error { return tr.Insert("/a/..", reg(1)) }},
		{"long", ErrInvalidName, func() error { return tr.Insert("/"+strings.Repeat("x", 256), reg(1)) }},
		{"root", ErrRoot, func() error { _, err := tr.Remove("/"); return err }},
		{"remove missing", ErrNotExist, func() error { _, err := tr.Remove("/a/nope"); return err }},
		{"mkdir over file", ErrNotDir, func() error { _, err := tr.Mkdir("/a/b/c"); return err }},
		{"link missing", ErrNotExist, func() error { return tr.Link("/l", "/nope") }},
		{"nil", ErrNilNode, func() error { return tr.Insert("/n", nil) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.fn(); !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
	if _, err := tr.Remove("/a/b/m"); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Lookup("/a/b/m"); !errors.Is(err, ErrNotExist) {
		t.Errorf("lookup after remove: %v", err)
	}
}

func TestWalkAndClone(t *testing.T) {
	tr := New()
	f := reg(3)
	f.Content = []byte("abc")
	f.SetXattr("user.a", []byte("1"))
	if err := tr.Insert("/f", f); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Mkdir("/d/e"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Link("/d/h", "/f"); err != nil {
		t.Fatal(err)
	}
	if err := tr.Link("/d/e/up", "/d"); err != nil { // directory hard link: not descended
		t.Fatal(err)
	}
	var got []string
	err := tr.Walk(func(p string, d Dirent) error {
		s := p
		if d.HardLink {
			s += "@"
		}
		got = append(got, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "/ /d /d/e /d/e/up@ /d/h@ /f"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("walk = %q, want %q", g, want)
	}
	c := tr.Clone()
	cf, _ := c.Lookup("/f")
	ch, _ := c.Lookup("/d/h")
	if cf != ch || cf == f {
		t.Errorf("clone: hard link not preserved or node shared with original")
	}
	cf.Content[0] = 'x'
	cf.SetXattr("user.a", []byte("2"))
	if string(f.Content) != "abc" {
		t.Errorf("clone shares content")
	}
	if v, _ := f.Xattr("user.a"); string(v) != "1" {
		t.Errorf("clone shares xattrs: %q", v)
	}
}

func TestXattrs(t *testing.T) {
	n := reg(0)
	n.SetXattr("user.b", []byte("1"))
	n.SetXattr("user.a", []byte("2"))
	n.SetXattr("user.b", []byte("3"))
	n.SortXattrs()
	if len(n.Xattrs) != 2 || n.Xattrs[0].Name != "user.a" || string(n.Xattrs[1].Value) != "3" {
		t.Errorf("xattrs = %+v", n.Xattrs)
	}
	if !n.RemoveXattr("user.a") || n.RemoveXattr("user.a") {
		t.Errorf("RemoveXattr results wrong")
	}
	w := &Node{Mode: TypeChar}
	if !w.IsWhiteout() || (&Node{Mode: TypeChar, Rdev: 1}).IsWhiteout() {
		t.Errorf("IsWhiteout wrong")
	}
}

func TestMkdirMarksImpliedDirs(t *testing.T) {
	tr := New()
	own := NewDir(0o700)
	own.Xattrs = []Xattr{{Name: "user.a", Value: []byte("1")}}
	if err := tr.Insert("own", own); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Mkdir("own/x/y"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"": false, "own": false, "own/x": true, "own/x/y": true} {
		n, err := tr.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		if n.IsImplied() != want {
			t.Errorf("%q: implied %v, want %v", p, n.IsImplied(), want)
		}
	}
	n, _ := tr.Lookup("own/x")
	if n.Mode != TypeDir|0o755 || n.UID != 0 || n.GID != 0 || n.Mtime != (Time{}) {
		t.Errorf("implied dir: %+v", n)
	}
	// ClearImplied leaves a shared xattr slice alone.
	shared := []Xattr{{Name: "user.b", Value: []byte("2")}, {Name: ImpliedXattr, Value: []byte("y")}}
	other := &Node{Mode: TypeDir, Xattrs: shared}
	n.Xattrs = shared
	n.ClearImplied()
	if n.IsImplied() || len(n.Xattrs) != 1 || !other.IsImplied() || len(other.Xattrs) != 2 || other.Xattrs[1].Name != ImpliedXattr {
		t.Errorf("ClearImplied: %+v, shared %+v", n.Xattrs, other.Xattrs)
	}
	if f := (&Node{Mode: TypeReg, Xattrs: shared}); f.IsImplied() {
		t.Error("a file is implied")
	}
}
