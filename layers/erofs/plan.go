package erofs

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Errors returned (wrapped) by the writer.
var (
	// ErrInvalidTree means the tree cannot be written as a composefs image
	// (bad mode, inconsistent inline content, bad xattr, hard-link target
	// outside the tree, xattr budget exceeded, ...).
	ErrInvalidTree = errors.New("erofs: invalid tree")
	// ErrFileTooLarge means an external file needs more than 1024 chunks
	// (size above 2^53 bytes).
	ErrFileTooLarge = errors.New("erofs: file too large")
	// ErrInvalidVersion means a format version above 1 was requested.
	ErrInvalidVersion = errors.New("erofs: invalid format version")
	// ErrTooLarge means the image exceeds an on-disk 32-bit limit.
	ErrTooLarge = errors.New("erofs: image too large")
)

// Options controls the format version of a written image.
type Options struct {
	// MinVersion and MaxVersion bound the composefs format version (0 or
	// 1). The version is MinVersion, raised to 1 when MaxVersion ≥ 1 and
	// the tree holds a whiteout; a MaxVersion below MinVersion counts as
	// MinVersion. The zero value therefore writes version 0;
	// DefaultOptions gives mkcomposefs' defaults.
	MinVersion, MaxVersion uint32
}

// DefaultOptions returns mkcomposefs' defaults: MinVersion 0, MaxVersion 1
// (version 1 only when the tree holds a whiteout).
func DefaultOptions() Options { return Options{MinVersion: 0, MaxVersion: 1} }

// plan is the complete layout of an image, computed before any byte is
// written.
type plan struct {
	version     uint32
	flags       uint32
	inodes      []*inode              // BFS order: index = ino
	byNode      map[*tree.Node]*inode // directories and hard-link targets
	linkTargets map[*tree.Node]bool
	minMtime    tree.Time
	shared      []sharedXattr
	sharedRefs  []int32 // per inode xattr (from inode.xref): its shared index, or -1
	inodesEnd   int64
	dataStart   int64
	nBlocks     uint64
}

// newPlan computes the layout of t's image. It does not modify t.
func newPlan(t *tree.Tree, opts Options) (*plan, error) {
	if t == nil || t.Root == nil || !t.Root.IsDir() {
		return nil, fmt.Errorf("%w: root must be a directory", ErrInvalidTree)
	}
	min, max := opts.MinVersion, opts.MaxVersion
	if max < min {
		max = min
	}
	if max > 1 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidVersion, max)
	}
	p := &plan{version: min, byNode: make(map[*tree.Node]*inode), linkTargets: make(map[*tree.Node]bool)}
	if p.scan(t.Root, make(map[*tree.Node]bool)) && p.version < 1 && max >= 1 {
		p.version = 1
	}
	root := newInode(t.Root)
	p.byNode[t.Root] = root
	if err := p.rewrite(root, root); err != nil {
		return nil, err
	}
	if err := root.setXattr(xattrOpaque, []byte("y")); err != nil {
		return nil, err
	}
	if err := p.addStubs(root); err != nil {
		return nil, err
	}
	if err := p.computeTree(root); err != nil {
		return nil, err
	}
	p.chooseShared()
	if err := p.layout(); err != nil {
		return nil, err
	}
	return p, nil
}

// scan collects the targets of hard-link entries and reports whether any
// node reached through primary entries is a whiteout.
func (p *plan) scan(n *tree.Node, seen map[*tree.Node]bool) bool {
	if !n.IsDir() {
		return n.IsWhiteout()
	}
	if seen[n] {
		return false
	}
	seen[n] = true
	found := false
	for _, e := range n.Entries() {
		if e.HardLink {
			p.linkTargets[e.Node] = true
		} else if p.scan(e.Node, seen) {
			found = true
		}
	}
	return found
}

func newInode(n *tree.Node) *inode {
	in := &inode{src: n, mode: n.Mode, size: n.Size, nlink: n.Nlink, xattrs: n.Xattrs}
	if n.Type() == tree.TypeSymlink {
		in.size = uint64(len(n.Target))
	}
	return in
}

// rewrite is the rewrite pass (§4.2) for in, whose parent is parent.
func (p *plan) rewrite(in, parent *inode) error {
	in.parent = parent
	if err := p.validate(in); err != nil {
		return err
	}
	for i := range in.xattrs {
		if k := in.xattrs[i].Name; strings.HasPrefix(k, xattrOverlayPrefix) {
			in.ownX(2)
			in.xattrs[i].Name = xattrEscapedPrefix + k[len(xattrOverlayPrefix):]
		}
	}
	switch {
	case in.isExternal():
		in.setMetacopy()
	case in.typ() == tree.TypeChar && in.rdev() == 0:
		if err := p.convertWhiteout(in, parent); err != nil {
			return err
		}
	case in.typ() == tree.TypeDir:
		return p.rewriteDir(in)
	}
	return nil
}

// setMetacopy gives an external file its overlay metacopy xattr (with the
// digest when known) and, with a payload, its redirect, as derived xattrs.
// lcfs sets them with its xattr budget counter, which starts at 0 for the
// writer's copy of a node (§6.6): their cost (at most 7+24+36+12 and
// 7+24+4096) cannot exceed it, and nothing is set on a file after them.
func (in *inode) setMetacopy() {
	in.derived |= derivedMetacopy
	if in.src.Payload != "" {
		in.derived |= derivedRedirect
	}
}

// xattrSet is one xattr assignment of the whiteout conversion.
type xattrSet struct {
	in  *inode
	key string
	val []byte
}

// convertWhiteout turns a whiteout into an escaped overlay whiteout and
// marks its parent (§4.2 step 4).
func (p *plan) convertWhiteout(in, parent *inode) error {
	in.size = 0
	in.mode = tree.TypeReg | in.mode&^tree.TypeMask
	empty := []byte{}
	sets := []xattrSet{
		{in, xattrEscWhiteout, empty},
		{in, xattrUserWhiteout, empty},
		{parent, xattrEscWhiteouts, empty},
		{parent, xattrUserWhiteouts, empty},
	}
	if p.version >= 1 {
		sets = append(sets, xattrSet{parent, xattrEscOpaque, []byte("x")}, xattrSet{parent, xattrUserOpaque, []byte("x")})
	}
	in.ownX(2)
	parent.ownX(len(sets) - 2)
	for _, s := range sets {
		if err := s.in.setXattr(s.key, s.val); err != nil {
			return err
		}
	}
	return nil
}

// rewriteDir builds the directory's entries (adding "." and "..") and
// rewrites its children in name order.
func (p *plan) rewriteDir(in *inode) error {
	src := in.src.Entries()
	in.ents = make([]dirent, 0, len(src)+2)
	// "." and ".." take their own places in name order (§8.2): they are
	// not always neighbours, since a name such as ".-x" or ".\x01" sorts
	// between them. Tree names are never "." or "..".
	dot := sort.Search(len(src), func(i int) bool { return src[i].Name >= "." })
	dotdot := dot + sort.Search(len(src)-dot, func(i int) bool { return src[dot+i].Name >= ".." })
	for _, e := range src[:dot] {
		in.ents = append(in.ents, dirent{name: e.Name, node: e.Node, link: e.HardLink})
	}
	in.ents = append(in.ents, dirent{name: ".", in: in, link: true})
	for _, e := range src[dot:dotdot] {
		in.ents = append(in.ents, dirent{name: e.Name, node: e.Node, link: e.HardLink})
	}
	in.ents = append(in.ents, dirent{name: "..", in: in.parent, link: true})
	for _, e := range src[dotdot:] {
		in.ents = append(in.ents, dirent{name: e.Name, node: e.Node, link: e.HardLink})
	}
	for i := range in.ents {
		e := &in.ents[i]
		if e.link {
			continue
		}
		tracked := e.node.IsDir() || p.linkTargets[e.node]
		if _, seen := p.byNode[e.node]; tracked && seen {
			e.link = true // a second primary entry: treat it as a hard link
			continue
		}
		child := newInode(e.node)
		if tracked {
			p.byNode[e.node] = child
		}
		e.in = child
		if err := p.rewrite(child, in); err != nil {
			return err
		}
	}
	return nil
}

// validate checks what the reference checks before writing a node, plus
// the invariants the tree model leaves to its users.
func (p *plan) validate(in *inode) error {
	n := in.src
	if !tree.ValidType(n.Mode) {
		return fmt.Errorf("%w: invalid mode %o", ErrInvalidTree, n.Mode)
	}
	switch n.Type() {
	case tree.TypeReg:
		if n.Size > 0 && n.Content != nil && uint64(len(n.Content)) != n.Size {
			return fmt.Errorf("%w: inline content of %d bytes for size %d", ErrInvalidTree, len(n.Content), n.Size)
		}
		if in.isExternal() {
			bits, count := chunkGeometry(n.Size)
			if count > maxChunks {
				return fmt.Errorf("%w: %d bytes", ErrFileTooLarge, n.Size)
			}
			in.chunkBits, in.chunkCount = uint8(bits), uint16(count)
		}
	case tree.TypeSymlink:
		if len(n.Target) == 0 || len(n.Target) >= blkSize {
			return fmt.Errorf("%w: symlink target of %d bytes", ErrInvalidTree, len(n.Target))
		}
	}
	for _, x := range in.xattrs {
		if len(x.Name) == 0 || len(x.Name) > 255 || len(x.Value) > 65535 {
			return fmt.Errorf("%w: xattr %.64q: key or value size out of range", ErrInvalidTree, x.Name)
		}
	}
	return nil
}

// chunkGeometry returns chunkbits and the chunk count of an external file.
func chunkGeometry(size uint64) (uint, uint64) {
	bits := uint(blkSizeBits)
	for bits < maxChunkBits && uint64(1)<<bits < size {
		bits++
	}
	count := (size + (uint64(1) << bits) - 1) >> bits
	return bits, count
}

// addStubs adds the 256 whiteout stubs 00..ff to the root (§4.4).
func (p *plan) addStubs(root *inode) error {
	var sel []byte
	selOK := false
	if v, ok := root.xattr(xattrSelinux); ok {
		sel, selOK = v, true
	}
	stub := &tree.Node{Mode: tree.TypeChar | 0o644, Nlink: 1, UID: root.src.UID, GID: root.src.GID, Mtime: root.src.Mtime}
	merged := make([]dirent, 0, len(root.ents)+256)
	i := 0
	for b := 0; b < 256; b++ {
		name := string([]byte{hexDigit(b >> 4), hexDigit(b & 15)})
		for i < len(root.ents) && root.ents[i].name < name {
			merged = append(merged, root.ents[i])
			i++
		}
		if i < len(root.ents) && root.ents[i].name == name {
			continue
		}
		st := &inode{src: stub, parent: root, mode: tree.TypeChar | 0o644, nlink: 1}
		if selOK {
			if err := st.setXattr(xattrSelinux, sel); err != nil {
				return err
			}
		}
		merged = append(merged, dirent{name: name, in: st})
	}
	root.ents = append(merged, root.ents[i:]...)
	return nil
}

func hexDigit(v int) byte { return "0123456789abcdef"[v] }
