package erofs

import (
	"fmt"
	"math/bits"
	"sort"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// inode is the writer's state for one image inode: the node's metadata
// after the composefs rewrite (§4 of the format spec) and its layout.
type inode struct {
	src    *tree.Node
	parent *inode
	ents   []dirent     // directories: all entries in name order, "." and ".." included
	xattrs []tree.Xattr // after the rewrite; aliases src.Xattrs until flagOwnXattrs
	budget uint64       // lcfs xattr budget counter (§6.6)
	size   uint64       // the stored size (dumpfile SIZE for devices, FIFOs, sockets)
	pos    int64        // byte offset of the inode (nid = pos/32)

	// 128 bytes: a tree has an inode per file. The device number is the
	// node's (see rdev), the dirent groups are counted when written.
	mode, nlink uint32 // after the rewrite
	ino         uint32
	blkaddr     uint32
	nBlocks     uint32
	tail        int32
	xattrSize   int32
	xref        int32 // index of the first xattr's entry in plan.sharedRefs
	chunkCount  uint16
	derived     uint8 // derivedMetacopy, derivedRedirect
	nShared     uint8
	chunkBits   uint8
	flags       uint8 // flagExtended, flagOwnXattrs
}

const (
	flagExtended  uint8 = 1 << iota // written as an extended inode
	flagOwnXattrs                   // xattrs is the writer's copy
)

func (in *inode) extended() bool { return in.flags&flagExtended != 0 }

// rdev is the device number of a device inode, else 0.
func (in *inode) rdev() uint32 {
	if t := in.typ(); t == tree.TypeChar || t == tree.TypeBlock {
		return in.src.Rdev
	}
	return 0
}

// The xattrs every external file gets (§4.2 step 3) are not stored in
// in.xattrs: a tree of many files would hold a copy of each digest and
// payload. They are flags, and their values are built when read.
const (
	derivedMetacopy uint8 = 1 << iota
	derivedRedirect
)

// derivedKeys are the derived xattrs, in key order.
var derivedKeys = [...]struct {
	bit uint8
	key string
}{{derivedMetacopy, xattrMetacopy}, {derivedRedirect, xattrRedirect}}

// numXattrs is the number of in's xattrs, derived ones included.
func (in *inode) numXattrs() int {
	return len(in.xattrs) + bits.OnesCount8(in.derived)
}

// xattrAt returns in's i-th xattr in key order (in.xattrs sorted, the
// derived ones in their places). A derived value is built in *buf (which
// keeps the capacity): it is valid until *buf's next use.
func (in *inode) xattrAt(i int, buf *[]byte) (string, []byte) {
	bit, key, j := in.locate(i)
	if bit != 0 {
		*buf = in.derivedValue(bit, (*buf)[:0])
		return key, *buf
	}
	return in.xattrs[j].Name, in.xattrs[j].Value
}

// xattrKey returns the key of in's i-th xattr (see xattrAt).
func (in *inode) xattrKey(i int) string {
	bit, key, j := in.locate(i)
	if bit != 0 {
		return key
	}
	return in.xattrs[j].Name
}

// locate finds in's i-th xattr in key order: a derived one (its bit and
// key), or in.xattrs[j].
func (in *inode) locate(i int) (bit uint8, key string, j int) {
	if in.derived == 0 {
		return 0, "", i
	}
	before, skip := 0, 0 // derived entries before this one; before index i
	for _, d := range derivedKeys {
		if in.derived&d.bit == 0 {
			continue
		}
		m := sort.Search(len(in.xattrs), func(j int) bool { return in.xattrs[j].Name >= d.key }) + before
		before++
		switch {
		case m == i:
			return d.bit, d.key, 0
		case m < i:
			skip++
		}
	}
	return 0, "", i - skip
}

// derivedValue builds the value of a derived xattr in buf.
func (in *inode) derivedValue(bit uint8, buf []byte) []byte {
	buf = buf[:0]
	if bit == derivedRedirect {
		return append(append(buf, '/'), in.src.Payload...)
	}
	d := in.src.Digest
	if d == nil {
		return buf
	}
	buf = append(buf, 0, metacopyHeaderLen+metacopyDigestLen, 0, metacopyDigestSHA256)
	return append(buf, d[:]...)
}

// ownX makes in.xattrs a private copy, with room for extra more, before
// it is modified: the writer never modifies the caller's tree.
func (in *inode) ownX(extra int) {
	if in.flags&flagOwnXattrs == 0 {
		in.xattrs = append(make([]tree.Xattr, 0, len(in.xattrs)+extra), in.xattrs...)
		in.flags |= flagOwnXattrs
	}
}

// dirent is a directory entry in the image.
type dirent struct {
	name string
	node *tree.Node // target node for tree entries (resolved to target after the rewrite)
	in   *inode
	link bool // a link entry: ".", "..", a hard link: never its own inode
}

func (in *inode) typ() uint32 { return in.mode & tree.TypeMask }

func (in *inode) nid() uint64 { return uint64(in.pos / slotSize) }

// isExternal reports whether in is a regular file whose data is outside
// the image (chunk-based with null chunks).
func (in *inode) isExternal() bool {
	return in.typ() == tree.TypeReg && in.size > 0 && in.src.Content == nil
}

// setXattr sets an xattr like lcfs_node_set_xattr, with the budget counter
// of §6.6 (the counter starts at 0 for the writer's copy of the tree).
func (in *inode) setXattr(key string, value []byte) error {
	in.ownX(1)
	for i := range in.xattrs {
		if in.xattrs[i].Name != key {
			continue
		}
		old := in.xattrs[i]
		last := len(in.xattrs) - 1
		in.xattrs[i] = in.xattrs[last]
		in.xattrs = in.xattrs[:last]
		if len(in.xattrs) > 0 {
			in.budget -= uint64(7 + len(key) + len(old.Value))
		} else {
			in.budget = 0
		}
		break
	}
	cost := uint64(7 + len(key) + len(value))
	if len(in.xattrs) == 0 {
		cost += 12
	}
	if in.budget+cost > 32767 {
		return fmt.Errorf("%w: set xattr %q: numerical result out of range (xattr budget)", ErrInvalidTree, key)
	}
	in.budget += cost
	in.xattrs = append(in.xattrs, tree.Xattr{Name: key, Value: value})
	return nil
}

func (in *inode) xattr(key string) ([]byte, bool) {
	for _, x := range in.xattrs {
		if x.Name == key {
			return x.Value, true
		}
	}
	return nil, false
}

// fileType returns the EROFS_FT_* code of in.
func (in *inode) fileType() uint8 {
	switch in.typ() {
	case tree.TypeReg:
		return ftRegFile
	case tree.TypeDir:
		return ftDir
	case tree.TypeChar:
		return ftChrdev
	case tree.TypeBlock:
		return ftBlkdev
	case tree.TypeFifo:
		return ftFifo
	case tree.TypeSocket:
		return ftSock
	case tree.TypeSymlink:
		return ftSymlink
	}
	return ftUnknown
}

// xattrIndex splits an xattr key into its e_name_index and stored name.
func xattrIndex(key string) (uint8, string) {
	for _, p := range xattrPrefixes {
		if len(key) >= len(p.prefix) && key[:len(p.prefix)] == p.prefix {
			return p.index, key[len(p.prefix):]
		}
	}
	return xattrIndexNone, key
}

// xattrEntrySize is the size of one encoded xattr entry (§6.2).
func xattrEntrySize(key string, valueLen int) int {
	_, name := xattrIndex(key)
	return roundUp(xattrEntryHeaderSize+len(name)+valueLen, 4)
}

func roundUp[T int | int64 | uint64](x, a T) T { return (x + a - 1) / a * a }
