package tree

import (
	"fmt"
	"sort"
	"strings"
)

// File type bits of Node.Mode (the S_IFMT part of st_mode).
const (
	TypeMask    uint32 = 0o170000 // S_IFMT
	TypeSocket  uint32 = 0o140000 // S_IFSOCK
	TypeSymlink uint32 = 0o120000 // S_IFLNK
	TypeReg     uint32 = 0o100000 // S_IFREG
	TypeBlock   uint32 = 0o060000 // S_IFBLK
	TypeDir     uint32 = 0o040000 // S_IFDIR
	TypeChar    uint32 = 0o020000 // S_IFCHR
	TypeFifo    uint32 = 0o010000 // S_IFIFO
)

// MaxNameLen is the longest directory entry name, in bytes.
const MaxNameLen = 255

// Time is a file modification time: seconds since the epoch (may be
// negative) and nanoseconds. Nsec is not range-checked: composefs stores
// whatever 32-bit value it is given.
type Time struct {
	Sec  int64
	Nsec uint32
}

// Before reports whether t is strictly earlier than u, comparing seconds
// (signed) first and then nanoseconds.
func (t Time) Before(u Time) bool {
	if t.Sec != u.Sec {
		return t.Sec < u.Sec
	}
	return t.Nsec < u.Nsec
}

// Xattr is one extended attribute: the full key (with its namespace
// prefix, e.g. "user.foo") and the raw value.
type Xattr struct {
	Name  string
	Value []byte
}

// Node is one file-system object (an inode): a directory, regular file,
// symlink, character or block device, FIFO or socket. Its metadata does not
// depend on the path it is reached by; hard links are several directory
// entries pointing at the same *Node.
//
// A whiteout is a character device with Rdev 0 (see IsWhiteout).
//
// Regular files come in three kinds:
//   - empty: Size 0 (Content, Payload and Digest are ignored);
//   - inline: Size > 0 and Content != nil, len(Content) == Size;
//   - external: Size > 0 and Content == nil; the data lives in an object
//     store at Payload (a relative path like "ab/cdef…", used as the
//     overlay redirect; may be empty), with the object's fs-verity digest in
//     Digest when known.
type Node struct {
	// Mode is st_mode: type bits (TypeMask) and permission bits.
	Mode uint32
	// UID and GID own the node.
	UID, GID uint32
	// Rdev is the raw dev_t of a device node (kernel "new" encoding, as
	// stat's st_rdev on Linux); 0 for other types.
	Rdev uint32
	// Nlink is the link count recorded for the node. Writers may recompute
	// it for directories.
	Nlink uint32
	// Size is the file size for regular files; for symlinks the target
	// length; ignored for directories; for devices, FIFOs and sockets it is
	// carried along as given (composefs only uses it to choose the inode
	// layout).
	Size uint64
	// Mtime is the modification time.
	Mtime Time
	// Xattrs are the extended attributes, unique by name. Order is not
	// significant; writers sort them. Use SetXattr/Xattr/RemoveXattr.
	// Values may be shared between nodes (parsers intern them): replace a
	// value, never modify its bytes in place.
	Xattrs []Xattr
	// Target is a symlink's target.
	Target string
	// Content is a regular file's inline content (nil if external).
	Content []byte
	// Payload is an external regular file's path in the object store,
	// without a leading slash; "" means no redirect.
	Payload string
	// Digest is the fs-verity sha256 digest of an external regular file's
	// content, or nil when unknown.
	Digest *[32]byte

	// children holds a directory's entries sorted by name (byte order).
	children []Dirent
}

// Dirent is a directory entry: a name and the node it refers to.
type Dirent struct {
	// Name is the entry name: 1..255 bytes, no '/', not "." or "..".
	Name string
	// Node is the object this entry refers to.
	Node *Node
	// HardLink is true when this entry is a secondary link to a node whose
	// primary entry is elsewhere in the tree (a tar or dumpfile hard link).
	// Every node has exactly one primary entry (HardLink false); writers
	// place the inode where the primary entry is.
	HardLink bool
}

// Type returns the file type bits of n's mode (n.Mode & TypeMask).
func (n *Node) Type() uint32 { return n.Mode & TypeMask }

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.Type() == TypeDir }

// IsRegular reports whether n is a regular file.
func (n *Node) IsRegular() bool { return n.Type() == TypeReg }

// IsWhiteout reports whether n is an overlay whiteout: a character device
// with device number 0/0.
func (n *Node) IsWhiteout() bool { return n.Type() == TypeChar && n.Rdev == 0 }

// IsExternal reports whether n is a regular file whose content lives
// outside the image (Size > 0 and no inline content).
func (n *Node) IsExternal() bool { return n.IsRegular() && n.Size > 0 && n.Content == nil }

// ValidType reports whether mode's type bits name one of the seven file
// types.
func ValidType(mode uint32) bool {
	switch mode & TypeMask {
	case TypeSocket, TypeSymlink, TypeReg, TypeBlock, TypeDir, TypeChar, TypeFifo:
		return true
	}
	return false
}

// NewDir returns an empty directory node with the given permission bits
// (type bits in perm are replaced by TypeDir) and Nlink 2.
func NewDir(perm uint32) *Node {
	return &Node{Mode: TypeDir | perm&^TypeMask, Nlink: 2}
}

// Xattr returns the value of the named xattr and whether it is set.
func (n *Node) Xattr(name string) ([]byte, bool) {
	for i := range n.Xattrs {
		if n.Xattrs[i].Name == name {
			return n.Xattrs[i].Value, true
		}
	}
	return nil, false
}

// SetXattr sets the named xattr to value, replacing any previous value.
func (n *Node) SetXattr(name string, value []byte) {
	for i := range n.Xattrs {
		if n.Xattrs[i].Name == name {
			n.Xattrs[i].Value = value
			return
		}
	}
	n.Xattrs = append(n.Xattrs, Xattr{Name: name, Value: value})
}

// RemoveXattr deletes the named xattr and reports whether it was set.
func (n *Node) RemoveXattr(name string) bool {
	for i := range n.Xattrs {
		if n.Xattrs[i].Name == name {
			n.Xattrs = append(n.Xattrs[:i], n.Xattrs[i+1:]...)
			return true
		}
	}
	return false
}

// SortXattrs sorts n's xattrs by name in byte order.
func (n *Node) SortXattrs() {
	sort.Slice(n.Xattrs, func(i, j int) bool { return n.Xattrs[i].Name < n.Xattrs[j].Name })
}

// Entries returns a directory's entries sorted by name. The slice is owned
// by n: do not modify it; use Insert and Remove.
func (n *Node) Entries() []Dirent { return n.children }

// NumEntries returns the number of entries in directory n.
func (n *Node) NumEntries() int { return len(n.children) }

// find returns the index of name in n.children, or where it would go.
func (n *Node) find(name string) (int, bool) {
	c := n.children
	// Fast path: entries usually arrive in order.
	if k := len(c); k > 0 && c[k-1].Name < name {
		return k, false
	}
	i := sort.Search(len(c), func(i int) bool { return c[i].Name >= name })
	return i, i < len(c) && c[i].Name == name
}

// Entry returns directory n's entry called name.
func (n *Node) Entry(name string) (Dirent, bool) {
	i, ok := n.find(name)
	if !ok {
		return Dirent{}, false
	}
	return n.children[i], true
}

// Child returns the node of n's entry called name, or nil.
func (n *Node) Child(name string) *Node {
	d, ok := n.Entry(name)
	if !ok {
		return nil
	}
	return d.Node
}

// CheckName returns an error wrapping ErrInvalidName unless name is a valid
// entry name: 1..MaxNameLen bytes, no '/' or NUL, not "." or "..".
func CheckName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
	case len(name) > MaxNameLen:
	case strings.IndexByte(name, '/') >= 0, strings.IndexByte(name, 0) >= 0:
	default:
		return nil
	}
	return fmt.Errorf("%w: %q", ErrInvalidName, name)
}

// Insert adds the entry d to directory n, keeping entries sorted. It fails
// if n is not a directory, the name is invalid, d.Node is nil, or an entry
// with that name exists.
func (n *Node) Insert(d Dirent) error {
	if !n.IsDir() {
		return fmt.Errorf("insert %q: %w", d.Name, ErrNotDir)
	}
	if err := CheckName(d.Name); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	if d.Node == nil {
		return fmt.Errorf("insert %q: %w", d.Name, ErrNilNode)
	}
	i, ok := n.find(d.Name)
	if ok {
		return fmt.Errorf("insert %q: %w", d.Name, ErrExist)
	}
	if i == len(n.children) {
		n.children = append(n.children, d)
		return nil
	}
	n.children = append(n.children, Dirent{})
	copy(n.children[i+1:], n.children[i:])
	n.children[i] = d
	return nil
}

// Put sets directory n's entry d.Name to d, replacing any existing entry
// of that name. It fails like Insert except that an existing name is
// replaced.
func (n *Node) Put(d Dirent) error {
	if !n.IsDir() {
		return fmt.Errorf("put %q: %w", d.Name, ErrNotDir)
	}
	if i, ok := n.find(d.Name); ok {
		if d.Node == nil {
			return fmt.Errorf("put %q: %w", d.Name, ErrNilNode)
		}
		n.children[i] = d
		return nil
	}
	return n.Insert(d)
}

// Unlink removes directory n's entry called name and returns it.
func (n *Node) Unlink(name string) (Dirent, bool) {
	i, ok := n.find(name)
	if !ok {
		return Dirent{}, false
	}
	d := n.children[i]
	n.children = append(n.children[:i], n.children[i+1:]...)
	return d, true
}

// ClearEntries removes all entries of directory n.
func (n *Node) ClearEntries() { n.children = nil }
