package erofs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Tree returns the composefs view of the image, as composefs-info dump
// sees it:
//   - whiteout stubs (real character devices 0/0) are left out;
//   - escaped overlay whiteouts (regular files with
//     trusted.overlay.overlay.whiteout) become character devices 0/0;
//   - trusted.overlay.redirect becomes Payload (without the leading "/")
//     and a 36-byte trusted.overlay.metacopy becomes Digest of external
//     (chunk-based) regular files; inline files get Content;
//   - trusted.overlay.overlay.X is unescaped to trusted.overlay.X, and the
//     markers composefs adds (whiteouts, opaque=y on the root, user.overlay
//     whiteout markers, other trusted.overlay.* keys) are dropped;
//   - directory Size and Nlink are the image's values;
//   - a node reached again (same nid) becomes a hard-link entry, and is
//     not descended into again.
//
// The walk is bounded by the image size: hostile images give an error.
func (img *Image) Tree() (*tree.Tree, error) {
	ri, err := img.inode(img.rootNid)
	if err != nil {
		return nil, err
	}
	if ri.typ() != tree.TypeDir {
		return nil, fmt.Errorf("%w: root is not a directory", ErrCorrupt)
	}
	w := &viewWalker{img: img, seen: make(map[uint64]*tree.Node), budget: 16*img.size + 1<<20}
	root, err := w.node(ri)
	if err != nil {
		return nil, err
	}
	w.seen[ri.nid] = root
	if err := w.fill(root, ri); err != nil {
		return nil, err
	}
	return &tree.Tree{Root: root}, nil
}

// errBudget means the walk read more directory data than the image could
// hold without sharing blocks between directories.
var errBudget = errors.New("directory data exceeds the image's read budget")

type viewWalker struct {
	img    *Image
	seen   map[uint64]*tree.Node
	budget int64
}

// fill adds the entries of directory ri to dir, recursively.
func (w *viewWalker) fill(dir *tree.Node, ri *rawInode) error {
	if w.budget -= int64(ri.size) + 1; w.budget < 0 {
		return fmt.Errorf("%w: %w", ErrCorrupt, errBudget)
	}
	ents, err := w.img.readDir(ri)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.name == "." || e.name == ".." {
			continue
		}
		if n, ok := w.seen[e.nid]; ok {
			if err := dir.Insert(tree.Dirent{Name: e.name, Node: n, HardLink: true}); err != nil {
				return fmt.Errorf("%w: nid %d: %w", ErrCorrupt, ri.nid, err)
			}
			continue
		}
		cri, err := w.img.inode(e.nid)
		if err != nil {
			return err
		}
		if cri.typ() == tree.TypeChar && cri.u == 0 {
			continue // a whiteout stub
		}
		n, err := w.node(cri)
		if err != nil {
			return err
		}
		w.seen[e.nid] = n
		if err := dir.Insert(tree.Dirent{Name: e.name, Node: n}); err != nil {
			return fmt.Errorf("%w: nid %d: %w", ErrCorrupt, ri.nid, err)
		}
		if n.IsDir() {
			if err := w.fill(n, cri); err != nil {
				return err
			}
		}
	}
	return nil
}

// node converts an inode to a tree node (without directory entries).
func (w *viewWalker) node(ri *rawInode) (*tree.Node, error) {
	if w.budget -= ri.xattrSize + 64; w.budget < 0 {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, errBudget)
	}
	n := &tree.Node{Mode: ri.mode, UID: ri.uid, GID: ri.gid, Nlink: ri.nlink, Size: ri.size, Mtime: ri.mtime}
	raw, err := w.img.xattrs(ri)
	if err != nil {
		return nil, err
	}
	ov := mapXattrs(n, raw, ri.typ() == tree.TypeReg)
	switch ri.typ() {
	case tree.TypeReg:
		switch {
		case ov.whiteout:
			n.Mode = tree.TypeChar | n.Mode&^tree.TypeMask
			n.Size = 0
		case ri.layout == layoutChunkBased:
			n.Payload = strings.TrimPrefix(ov.redirect, "/")
			if len(ov.metacopy) == metacopyHeaderLen+metacopyDigestLen {
				var d [32]byte
				copy(d[:], ov.metacopy[metacopyHeaderLen:])
				n.Digest = &d
			}
		case ri.size > 0:
			if w.budget -= int64(min(ri.size, uint64(w.img.size))); w.budget < 0 {
				return nil, fmt.Errorf("%w: %w", ErrCorrupt, errBudget)
			}
			if n.Content, err = w.img.data(ri, uint64(w.img.size)); err != nil {
				return nil, err
			}
		}
	case tree.TypeSymlink:
		target, err := w.img.data(ri, maxSymlink)
		if err != nil {
			return nil, err
		}
		if len(target) == 0 {
			return nil, fmt.Errorf("%w: nid %d: empty symlink", ErrCorrupt, ri.nid)
		}
		n.Target = string(target)
	case tree.TypeChar, tree.TypeBlock:
		n.Rdev = ri.u
	}
	return n, nil
}

// overlayInfo holds the overlay xattrs consumed by the composefs view.
type overlayInfo struct {
	whiteout bool
	redirect string
	metacopy []byte
}

// mapXattrs sets n.Xattrs to the user-visible xattrs of raw and returns
// the overlay information composefs stored in xattrs.
func mapXattrs(n *tree.Node, raw []tree.Xattr, regular bool) overlayInfo {
	var ov overlayInfo
	for _, x := range raw {
		switch {
		case x.Name == xattrEscWhiteout && regular:
			ov.whiteout = true
		case x.Name == xattrEscWhiteouts, x.Name == xattrUserWhiteout, x.Name == xattrUserWhiteouts:
		case strings.HasPrefix(x.Name, xattrEscapedPrefix):
			n.Xattrs = append(n.Xattrs, tree.Xattr{Name: xattrOverlayPrefix + x.Name[len(xattrEscapedPrefix):], Value: x.Value})
		case strings.HasPrefix(x.Name, xattrOverlayPrefix):
			if regular && x.Name == xattrRedirect {
				ov.redirect = string(x.Value)
			}
			if regular && x.Name == xattrMetacopy {
				ov.metacopy = x.Value
			}
		default:
			n.Xattrs = append(n.Xattrs, x)
		}
	}
	return ov
}
