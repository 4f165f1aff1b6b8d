package erofs

import (
	"fmt"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// inode is the writer's state for one image inode: the node's metadata
// after the composefs rewrite (§4 of the format spec) and its layout.
type inode struct {
	src    *tree.Node
	parent *inode
	ents   []dirent // directories: all entries in name order, "." and ".." included

	// Metadata after the rewrite.
	mode   uint32
	size   uint64 // the stored size (dumpfile SIZE for devices, FIFOs, sockets)
	nlink  uint32
	rdev   uint32
	xattrs []tree.Xattr
	budget uint64 // lcfs xattr budget counter (§6.6)

	// Layout.
	ino        uint32
	extended   bool
	nShared    int // leading xattrs (in key order) stored as shared references
	sharedSel  []bool
	xattrSize  int
	nBlocks    uint64
	tail       int
	pos        int64 // byte offset of the inode (nid = pos/32)
	pad        int64 // zero bytes before the inode
	blkaddr    uint32
	chunkBits  uint
	chunkCount uint64
	groups     []int // directories: index of the first entry of each dirent group
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
