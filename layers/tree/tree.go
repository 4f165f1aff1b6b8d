package tree

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors returned (wrapped) by this package; test with errors.Is.
var (
	// ErrNotExist means a path component does not exist.
	ErrNotExist = errors.New("tree: no such entry")
	// ErrExist means an entry with that name already exists.
	ErrExist = errors.New("tree: entry exists")
	// ErrNotDir means a path component that must be a directory is not.
	ErrNotDir = errors.New("tree: not a directory")
	// ErrInvalidName means an entry name is empty, ".", "..", too long or
	// contains '/' or NUL.
	ErrInvalidName = errors.New("tree: invalid name")
	// ErrNilNode means an entry was given no node.
	ErrNilNode = errors.New("tree: nil node")
	// ErrRoot means the operation cannot apply to the root.
	ErrRoot = errors.New("tree: operation not allowed on the root")
)

// Tree is a file-system tree rooted at a directory node. Paths are
// slash-separated and relative to the root; leading, trailing and repeated
// slashes are ignored, so "a/b", "/a/b" and "//a/b/" are the same path and
// "" and "/" name the root. "." and ".." are not interpreted.
type Tree struct {
	// Root is the root directory.
	Root *Node
}

// New returns a tree whose root is an empty directory with mode 0755.
func New() *Tree {
	return &Tree{Root: NewDir(0o755)}
}

// SplitPath returns the non-empty components of a slash-separated path.
func SplitPath(p string) []string {
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, s := range parts {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Lookup returns the node at path p (following no symlinks).
func (t *Tree) Lookup(p string) (*Node, error) {
	n := t.Root
	for _, name := range SplitPath(p) {
		if !n.IsDir() {
			return nil, fmt.Errorf("lookup %q: %w", p, ErrNotDir)
		}
		c := n.Child(name)
		if c == nil {
			return nil, fmt.Errorf("lookup %q: %w", p, ErrNotExist)
		}
		n = c
	}
	return n, nil
}

// parent resolves the directory holding path p and returns it with the
// last component's name.
func (t *Tree) parent(op, p string) (*Node, string, error) {
	parts := SplitPath(p)
	if len(parts) == 0 {
		return nil, "", fmt.Errorf("%s %q: %w", op, p, ErrRoot)
	}
	dir, err := t.Lookup(strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", op, err)
	}
	if !dir.IsDir() {
		return nil, "", fmt.Errorf("%s %q: %w", op, p, ErrNotDir)
	}
	return dir, parts[len(parts)-1], nil
}

// Insert adds node n at path p. The parent directory must exist and p must
// not.
func (t *Tree) Insert(p string, n *Node) error {
	dir, name, err := t.parent("insert", p)
	if err != nil {
		return err
	}
	if err := dir.Insert(Dirent{Name: name, Node: n}); err != nil {
		return fmt.Errorf("insert %q: %w", p, err)
	}
	return nil
}

// Link adds a hard-link entry at path p to the node at path target. The
// new entry is marked HardLink; the target's Nlink is not changed.
func (t *Tree) Link(p, target string) error {
	n, err := t.Lookup(target)
	if err != nil {
		return fmt.Errorf("link %q: %w", p, err)
	}
	dir, name, err := t.parent("link", p)
	if err != nil {
		return err
	}
	if err := dir.Insert(Dirent{Name: name, Node: n, HardLink: true}); err != nil {
		return fmt.Errorf("link %q: %w", p, err)
	}
	return nil
}

// ImpliedXattr marks an implied directory: one that Mkdir created
// because a path below it was added, such as the "usr/bin" of a layer
// tar holding "usr/bin/x" but no "usr/bin/" entry. Its metadata is
// Mkdir's (mode 0755, owner 0:0, mtime 0, no other xattrs) and says
// nothing about the directory: stacking layers keeps the lower
// directory's mtime there, and a layer tar leaves the directory out, as
// its source did. Setting a directory's metadata from an entry of its
// own replaces its xattrs and so drops the mark. The name lies in
// overlayfs' reserved trusted.overlay. namespace, which layer tars and
// upper directories cannot set (layers refuses and drops it there).
const ImpliedXattr = "trusted.overlay.cfs.implied"

var impliedValue = []byte("y")

// IsImplied reports whether n is an implied directory (ImpliedXattr).
func (n *Node) IsImplied() bool {
	if !n.IsDir() {
		return false
	}
	_, ok := n.Xattr(ImpliedXattr)
	return ok
}

// ClearImplied removes n's ImpliedXattr, leaving the xattrs slice it may
// share with other nodes untouched.
func (n *Node) ClearImplied() {
	if _, ok := n.Xattr(ImpliedXattr); !ok {
		return
	}
	xs := make([]Xattr, 0, len(n.Xattrs)-1)
	for _, x := range n.Xattrs {
		if x.Name != ImpliedXattr {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		xs = nil
	}
	n.Xattrs = xs
}

// Mkdir returns the directory at path p, creating it and any missing
// parents (like mkdir -p) as implied directories: mode 0755, owner 0:0,
// mtime 0 and ImpliedXattr. It fails if a component exists and is not a
// directory.
func (t *Tree) Mkdir(p string) (*Node, error) {
	n := t.Root
	for _, name := range SplitPath(p) {
		c := n.Child(name)
		if c == nil {
			c = NewDir(0o755)
			c.Xattrs = []Xattr{{Name: ImpliedXattr, Value: impliedValue}}
			if err := n.Insert(Dirent{Name: name, Node: c}); err != nil {
				return nil, fmt.Errorf("mkdir %q: %w", p, err)
			}
		} else if !c.IsDir() {
			return nil, fmt.Errorf("mkdir %q: %w", p, ErrNotDir)
		}
		n = c
	}
	return n, nil
}

// Remove deletes the entry at path p (and so its subtree) and returns it.
// Other hard links to the same node are not touched.
func (t *Tree) Remove(p string) (Dirent, error) {
	dir, name, err := t.parent("remove", p)
	if err != nil {
		return Dirent{}, err
	}
	d, ok := dir.Unlink(name)
	if !ok {
		return Dirent{}, fmt.Errorf("remove %q: %w", p, ErrNotExist)
	}
	return d, nil
}

// ErrSkipDir may be returned by a WalkFunc on a directory entry to skip
// that directory's contents.
var ErrSkipDir = errors.New("tree: skip directory")

// WalkFunc is called by Walk for every entry. path is the entry's
// slash-separated path starting with "/" ("/" for the root, whose Dirent
// has an empty Name). Returning ErrSkipDir on a directory skips its
// entries; any other error stops the walk and is returned.
type WalkFunc func(path string, d Dirent) error

// Walk visits the root and then every entry depth-first in pre-order,
// entries of a directory in name order. Directories reached through a
// hard-link entry (HardLink true) are reported but not descended into, so
// a walk always ends.
func (t *Tree) Walk(fn WalkFunc) error {
	err := fn("/", Dirent{Node: t.Root})
	if errors.Is(err, ErrSkipDir) {
		return nil
	}
	if err != nil {
		return err
	}
	return walkDir(t.Root, "", fn)
}

func walkDir(dir *Node, prefix string, fn WalkFunc) error {
	for _, d := range dir.children {
		p := prefix + "/" + d.Name
		err := fn(p, d)
		if errors.Is(err, ErrSkipDir) {
			continue
		}
		if err != nil {
			return err
		}
		if d.Node.IsDir() && !d.HardLink {
			if err := walkDir(d.Node, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// Clone returns a deep copy of t: every node is copied once, so hard links
// in the copy point at shared copied nodes just as in t. Byte slices and
// digests are copied too.
func (t *Tree) Clone() *Tree {
	seen := make(map[*Node]*Node)
	return &Tree{Root: cloneNode(t.Root, seen)}
}

func cloneNode(n *Node, seen map[*Node]*Node) *Node {
	if c, ok := seen[n]; ok {
		return c
	}
	c := *n
	seen[n] = &c
	if n.Xattrs != nil {
		c.Xattrs = make([]Xattr, len(n.Xattrs))
		for i, x := range n.Xattrs {
			c.Xattrs[i] = Xattr{Name: x.Name, Value: append([]byte(nil), x.Value...)}
		}
	}
	if n.Content != nil {
		c.Content = append([]byte{}, n.Content...)
	}
	if n.Digest != nil {
		d := *n.Digest
		c.Digest = &d
	}
	if n.children != nil {
		c.children = make([]Dirent, len(n.children))
		for i, d := range n.children {
			c.children[i] = Dirent{Name: d.Name, Node: cloneNode(d.Node, seen), HardLink: d.HardLink}
		}
	}
	return &c
}
