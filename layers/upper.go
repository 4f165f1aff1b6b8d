package layers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Overlay xattrs that an upper directory carries.
const (
	overlayPrefix    = "trusted.overlay."
	metacopyXattr    = "trusted.overlay.metacopy"
	redirectXattr    = "trusted.overlay.redirect"
	maxXattrListSize = 64 << 10
)

// ErrUpper is wrapped by errors about an overlay upper directory that
// cannot be turned into a layer tree.
var ErrUpper = errors.New("layers: overlay upper directory")

// FromUpper reads an overlayfs upper directory (a writable layer over the
// merged tree lower) as a layer tree: 0/0 character devices become
// whiteouts, opaque directories keep OpaqueXattr, a directory renamed
// within the mount (trusted.overlay.redirect) becomes an opaque directory
// holding the lower directory's entries under the upper ones, and a
// metacopy file (metadata copied up, data still in the lower layer) takes
// its content from the lower file it came from. Other trusted.overlay.*
// xattrs are overlay bookkeeping and are dropped. Contents of files
// written in the upper directory go to contents.
func FromUpper(ctx context.Context, dir string, lower *tree.Tree, contents Contents, opts IngestOptions) (*tree.Tree, error) {
	u := upperReader{lower: lower, contents: contents, opts: opts, inodes: map[inodeKey]*tree.Node{}}
	root, err := u.node(ctx, dir, "/")
	if err != nil {
		return nil, err
	}
	if !root.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrUpper, dir)
	}
	t := &tree.Tree{Root: root}
	if err := u.dir(ctx, root, dir, "/", false); err != nil {
		return nil, err
	}
	FixLinks(t)
	return t, nil
}

type inodeKey struct{ dev, ino uint64 }

type upperReader struct {
	lower    *tree.Tree
	contents Contents
	opts     IngestOptions
	inodes   map[inodeKey]*tree.Node
}

// dir reads the entries of the upper directory at real path p into n;
// lowerPath is where the same directory lies in the lower tree. A
// complete directory already holds everything below it (it is opaque, or
// lies in one): there, whiteouts just remove entries and subdirectories
// merge into the lower entries copied in.
func (u *upperReader) dir(ctx context.Context, n *tree.Node, p, lowerPath string, complete bool) error {
	if redirect, ok := getXattr(p, redirectXattr); ok {
		lowerPath = resolveRedirect(lowerPath, string(redirect))
		if err := u.fillFromLower(n, lowerPath); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUpper, p, err)
		}
	}
	complete = complete || isOpaque(n)
	names, err := readNames(p)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUpper, err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		childPath, childLower := filepath.Join(p, name), path.Join(lowerPath, name)
		child, err := u.node(ctx, childPath, childLower)
		if err != nil {
			return err
		}
		existing := n.Child(name)
		switch {
		case complete && child.IsWhiteout():
			n.Unlink(name)
			continue
		case complete && child.IsDir() && existing != nil && existing.IsDir():
			setDirMeta(existing, child)
			child = existing
		default:
			if err := n.Put(tree.Dirent{Name: name, Node: child}); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrUpper, childPath, err)
			}
		}
		if child.IsDir() {
			if err := u.dir(ctx, child, childPath, childLower, complete); err != nil {
				return err
			}
		}
	}
	return nil
}

// fillFromLower puts the lower directory's entries into n and marks n
// opaque, for a directory that was renamed inside the overlay.
func (u *upperReader) fillFromLower(n *tree.Node, lowerPath string) error {
	src, err := u.lookupLower(lowerPath)
	if err != nil {
		return fmt.Errorf("redirected directory: %w", err)
	}
	if !src.IsDir() {
		return fmt.Errorf("redirect target %s is not a directory", lowerPath)
	}
	sub := (&tree.Tree{Root: src}).Clone()
	for _, e := range sub.Root.Entries() {
		if err := n.Put(e); err != nil {
			return err
		}
	}
	n.SetXattr(OpaqueXattr, []byte("y"))
	return nil
}

// lowerIsDir reports whether the lower tree has a directory at p.
func (u *upperReader) lowerIsDir(p string) bool {
	if u.lower == nil {
		return false
	}
	n, err := u.lower.Lookup(p)
	return err == nil && n.IsDir()
}

func (u *upperReader) lookupLower(p string) (*tree.Node, error) {
	if u.lower == nil {
		return nil, fmt.Errorf("no lower layer to find %s in", p)
	}
	return u.lower.Lookup(p)
}

// node builds the node of the upper entry at real path p; hard links
// within the upper directory share one node.
func (u *upperReader) node(ctx context.Context, p, lowerPath string) (*tree.Node, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpper, &os.PathError{Op: "lstat", Path: p, Err: err})
	}
	key := inodeKey{uint64(st.Dev), st.Ino}
	if n, ok := u.inodes[key]; ok && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return n, nil
	}
	n := &tree.Node{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Nlink: 1,
		Mtime: tree.Time{Sec: st.Mtim.Sec, Nsec: uint32(st.Mtim.Nsec)}}
	xattrs, err := listXattrs(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpper, err)
	}
	for _, x := range xattrs {
		switch {
		case x.Name == OpaqueXattr && string(x.Value) == "y" && n.IsDir():
			// Overlayfs marks new directories opaque even where nothing
			// lies below; the layer keeps the mark only where it hides a
			// lower directory, so its diff carries no needless
			// .wh..wh..opq markers (which would hide content when the
			// layer is applied on another base).
			if u.lowerIsDir(lowerPath) {
				n.SetXattr(OpaqueXattr, x.Value)
			}
		case !strings.HasPrefix(x.Name, overlayPrefix):
			n.SetXattr(x.Name, x.Value)
		}
	}
	n.SortXattrs()
	if err := u.fill(ctx, n, p, lowerPath, &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUpper, p, err)
	}
	u.inodes[key] = n
	return n, nil
}

// fill sets the type-specific part of n.
func (u *upperReader) fill(ctx context.Context, n *tree.Node, p, lowerPath string, st *unix.Stat_t) error {
	switch n.Type() {
	case tree.TypeDir:
		n.Nlink = 2
	case tree.TypeSymlink:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		n.Target, n.Size = target, uint64(len(target))
	case tree.TypeChar, tree.TypeBlock:
		n.Rdev = uint32(st.Rdev)
	case tree.TypeReg:
		if _, ok := getXattr(p, metacopyXattr); ok {
			return u.lowerContent(n, p, lowerPath)
		}
		return u.content(ctx, n, p, st.Size)
	}
	return nil
}

// lowerContent gives a metacopy upper file the content of the lower file
// it was copied up from (its redirect, or the same path).
func (u *upperReader) lowerContent(n *tree.Node, p, lowerPath string) error {
	if redirect, ok := getXattr(p, redirectXattr); ok {
		lowerPath = resolveRedirect(path.Dir(lowerPath), string(redirect))
	}
	src, err := u.lookupLower(lowerPath)
	if err != nil {
		return fmt.Errorf("metacopy file without its lower file: %w", err)
	}
	if !src.IsRegular() {
		return fmt.Errorf("metacopy file's lower %s is not a regular file", lowerPath)
	}
	n.Size, n.Content, n.Payload, n.Digest = src.Size, src.Content, src.Payload, src.Digest
	return nil
}

func (u *upperReader) content(ctx context.Context, n *tree.Node, p string, size int64) error {
	n.Size = uint64(size)
	if size == 0 {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if size <= u.opts.InlineLimit {
		n.Content = make([]byte, size)
		_, err := io.ReadFull(f, n.Content)
		return err
	}
	obj, err := u.contents.Put(ctx, f, size)
	if err != nil {
		return fmt.Errorf("store content: %w", err)
	}
	d := obj.Digest
	n.Payload, n.Digest = obj.Payload, &d
	return nil
}

// resolveRedirect applies an overlay redirect: absolute from the layer
// root, or a name relative to the parent directory at base.
func resolveRedirect(base, redirect string) string {
	if strings.HasPrefix(redirect, "/") {
		return redirect
	}
	return path.Join(path.Dir(base), redirect)
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

func getXattr(p, name string) ([]byte, bool) {
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, false
	}
	return buf[:n], true
}

// listXattrs returns every xattr of p (without following a symlink).
func listXattrs(p string) ([]tree.Xattr, error) {
	buf := make([]byte, maxXattrListSize)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
	}
	var out []tree.Xattr
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		size, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		val := make([]byte, size)
		if size > 0 {
			if size, err = unix.Lgetxattr(p, name, val); err != nil {
				return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
			}
		}
		out = append(out, tree.Xattr{Name: name, Value: val[:size]})
	}
	return out, nil
}
