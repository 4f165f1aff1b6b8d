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
	ents   []dirent     // directories: all entries in name order, "." and ".." included
	xattrs []tree.Xattr // after the rewrite; aliases src.Xattrs until ownXattrs
	budget uint64       // lcfs xattr budget counter (§6.6)
	size   uint64       // the stored size (dumpfile SIZE for devices, FIFOs, sockets)
	pos    int64        // byte offset of the inode (nid = pos/32)

	mode, nlink, rdev uint32 // after the rewrite
	ino               uint32
	blkaddr           uint32
	nBlocks           uint32
	tail              int32
	xattrSize         int32
	nGroups           int32  // directories: number of dirent groups
	xref              int32  // index of the first xattr's entry in plan.pairRefs
	sharedMask        uint64 // bit i: xattr i is a shared reference (i < 64)
	sharedMore        []bool // the same for nodes with more than 64 xattrs
	chunkCount        uint16
	nShared           uint8
	chunkBits         uint8
	extended          bool
	ownXattrs         bool
}

// isShared reports whether xattr i is written as a shared reference.
func (in *inode) isShared(i int) bool {
	if in.sharedMore != nil {
		return in.sharedMore[i]
	}
	return i < 64 && in.sharedMask&(1<<i) != 0
}

func (in *inode) markShared(i int) {
	if len(in.xattrs) > 64 {
		if in.sharedMore == nil {
			in.sharedMore = make([]bool, len(in.xattrs))
		}
		in.sharedMore[i] = true
	} else {
		in.sharedMask |= 1 << i
	}
	in.nShared++
}

// ownX makes in.xattrs a private copy before it is modified: the writer
// never modifies the caller's tree.
func (in *inode) ownX() {
	if !in.ownXattrs {
		in.xattrs = append(make([]tree.Xattr, 0, len(in.xattrs)+4), in.xattrs...)
		in.ownXattrs = true
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
	in.ownX()
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
