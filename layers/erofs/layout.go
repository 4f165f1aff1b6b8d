package erofs

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// computeTree numbers the inodes in BFS order and fixes directory nlink,
// xattr order, the minimum mtime and the ACL flag (§5.1); it then resolves
// hard-link entries.
func (p *plan) computeTree(root *inode) error {
	p.inodes = append(p.inodes, root)
	p.minMtime = root.src.Mtime
	for i := 0; i < len(p.inodes); i++ {
		in := p.inodes[i]
		if i > math.MaxUint32 {
			return fmt.Errorf("%w: too many inodes", ErrTooLarge)
		}
		in.ino = uint32(i)
		if in.typ() == tree.TypeDir {
			dirs := uint32(0)
			for _, e := range in.ents {
				if !e.link && e.in.typ() == tree.TypeDir {
					dirs++
				}
			}
			in.nlink = 2 + dirs
		}
		if !slices.IsSortedFunc(in.xattrs, cmpXattr) {
			in.ownX(0)
			slices.SortFunc(in.xattrs, cmpXattr)
		}
		if in.src.Mtime.Before(p.minMtime) {
			p.minMtime = in.src.Mtime
		}
		for _, x := range in.xattrs {
			if x.Name == xattrACLAccess || x.Name == xattrACLDefault {
				p.flags |= cfsFlagHasACL
			}
		}
		for _, e := range in.ents {
			if !e.link {
				p.inodes = append(p.inodes, e.in)
			}
		}
	}
	for _, in := range p.inodes {
		for i := range in.ents {
			e := &in.ents[i]
			if e.in != nil {
				continue
			}
			if e.in = p.byNode[e.node]; e.in == nil {
				return fmt.Errorf("%w: hard link %q points outside the tree", ErrInvalidTree, e.name)
			}
		}
	}
	return nil
}

// sharedXattr is one entry of the shared xattr table.
type sharedXattr struct {
	key    string
	value  []byte
	offset int64 // byte offset within the table
	id     int32 // the pair's index while chooseShared runs
}

// pairInfo counts one distinct (key, value) pair. Its first occurrence,
// xattr xi of p.inodes[ino], stands for it: pairs are never copied.
type pairInfo struct {
	count int32
	index int32 // index in plan.shared, or -1
	next  int32 // the next pair with the same hash, or -1
	ino   int32
	xi    int32
}

// chooseShared builds the shared xattr table and decides, per inode, which
// xattrs are shared references (§6.4), then sizes every xattr body.
//
// Pairs are told apart by a hash of key and value (chained on collision)
// rather than by maps keyed with copies of them: a tree with many
// external files has two distinct pairs per file (metacopy, redirect).
func (p *plan) chooseShared() {
	total := 0
	for _, in := range p.inodes {
		total += in.numXattrs()
	}
	seed := maphash.MakeSeed() // the hash only buckets: the result does not depend on it
	pairs := make([]pairInfo, 0, total/2+1)
	first := make(map[uint64]int32, total/2+1)
	refs := make([]int32, 0, total)
	var shareable []int32
	var bufX, bufF []byte // derived values (see xattrAt)
	pair := func(id int32, buf *[]byte) (string, []byte) {
		return p.inodes[pairs[id].ino].xattrAt(int(pairs[id].xi), buf)
	}
	for ino, in := range p.inodes {
		in.xref = int32(len(refs))
		for xi := range in.numXattrs() {
			key, value := in.xattrAt(xi, &bufX)
			sum := maphash.String(seed, key)*0x9e3779b97f4a7c15 ^ maphash.Bytes(seed, value)
			head, ok := first[sum]
			id := int32(-1)
			for c := head; ok && c >= 0; c = pairs[c].next {
				fk, fv := pair(c, &bufF)
				if fk == key && bytes.Equal(fv, value) {
					id = c
					break
				}
			}
			if id < 0 {
				id = int32(len(pairs))
				next := int32(-1)
				if ok {
					next = head
				}
				pairs = append(pairs, pairInfo{index: -1, next: next, ino: int32(ino), xi: int32(xi)})
				first[sum] = id
			}
			if pairs[id].count++; pairs[id].count == 2 {
				shareable = append(shareable, id)
			}
			refs = append(refs, id)
		}
	}
	first = nil
	// The table holds the shareable pairs with their own values (a
	// derived one is only built on demand).
	p.shared = make([]sharedXattr, len(shareable))
	for i, id := range shareable {
		key, value := pair(id, &bufX)
		p.shared[i] = sharedXattr{key: key, value: bytes.Clone(value), id: id}
	}
	sort.Slice(p.shared, func(i, j int) bool {
		a, b := &p.shared[i], &p.shared[j]
		if a.key != b.key {
			return a.key > b.key
		}
		if len(a.value) != len(b.value) {
			return len(a.value) > len(b.value)
		}
		return bytes.Compare(a.value, b.value) > 0
	})
	var off int64
	for i := range p.shared {
		s := &p.shared[i]
		s.offset = off
		off += int64(xattrEntrySize(s.key, len(s.value)))
		pairs[s.id].index = int32(i)
	}
	// From here on a reference is the shared index of an xattr written as
	// a shared reference (at most maxSharedRefs per inode), else -1.
	p.sharedRefs = refs
	for _, in := range p.inodes {
		n := in.numXattrs()
		if n == 0 {
			continue
		}
		size := xattrIBodyHeaderSize
		for i := range n {
			r := &refs[int(in.xref)+i]
			if *r = pairs[*r].index; *r >= 0 && in.nShared < maxSharedRefs {
				in.nShared++
				size += 4
				continue
			}
			*r = -1
			key, value := in.xattrAt(i, &bufX)
			size += xattrEntrySize(key, len(value))
		}
		if size > math.MaxInt32 {
			size = math.MaxInt32 // rejected by layout: icount overflows
		}
		in.xattrSize = int32(size)
	}
}

// sharedID returns the shared-table index of an inode's i-th xattr if it
// is written as a shared reference, else -1.
func (p *plan) sharedID(in *inode, i int) int {
	return int(p.sharedRefs[int(in.xref)+i])
}

// dirGroups calls fn for each dirent group [from, to) of ents: the greedy
// split into groups of at most one block (§7.1, §8.2). It returns the
// size of the last group.
func dirGroups(ents []dirent, fn func(from, to int)) int {
	used, from := 0, 0
	for i, e := range ents {
		cost := direntSize + len(e.name)
		if used+cost > blkSize {
			if fn != nil {
				fn(from, i)
			}
			from, used = i, 0
		}
		used += cost
	}
	if fn != nil {
		fn(from, len(ents))
	}
	return used
}

// initialData sets an inode's initial (nBlocks, tail) (§7.1).
func (in *inode) initialData() {
	switch in.typ() {
	case tree.TypeDir:
		groups := 0
		used := dirGroups(in.ents, func(int, int) { groups++ })
		in.nBlocks = uint32(groups - 1)
		if used > halfBlock {
			in.nBlocks++
			used = 0
		}
		in.tail = int32(used)
	case tree.TypeSymlink:
		in.tail = int32(len(in.src.Target))
	case tree.TypeReg:
		switch {
		case in.size == 0:
		case in.isExternal():
			in.tail = int32(in.chunkCount) * chunkMapEntrySize
		default:
			in.nBlocks = uint32(in.size / blkSize)
			in.tail = int32(in.size % blkSize)
			if in.tail > halfBlock {
				in.nBlocks++
				in.tail = 0
			}
		}
	}
}

// useExtended decides between the compact and extended inode (§5.2).
func (p *plan) useExtended(in *inode) bool {
	size := in.size
	if in.typ() == tree.TypeDir {
		size = uint64(in.nBlocks)*blkSize + uint64(in.tail)
	}
	return in.src.Mtime != p.minMtime || in.nlink > math.MaxUint16 ||
		in.src.UID > math.MaxUint16 || in.src.GID > math.MaxUint16 || size > math.MaxUint32
}

// layout places every inode, the shared table and the data blocks (§7, §8.1).
func (p *plan) layout() error {
	pos := int64(inodeStart)
	for _, in := range p.inodes {
		in.initialData()
		if p.useExtended(in) {
			in.flags |= flagExtended
		}
		if in.xattrSize > 0 && (in.xattrSize-xattrIBodyHeaderSize)/4+1 > math.MaxUint16 {
			return fmt.Errorf("%w: xattrs too large", ErrInvalidTree)
		}
		pos = in.place(pos)
	}
	p.inodesEnd = roundUp(pos, slotSize)
	var tableSize int64
	for _, s := range p.shared {
		tableSize += int64(xattrEntrySize(s.key, len(s.value)))
	}
	p.dataStart = roundUp(p.inodesEnd+tableSize, blkSize)
	blk := uint64(p.dataStart / blkSize)
	for _, in := range p.inodes {
		if in.nBlocks > 0 {
			in.blkaddr = uint32(blk)
			blk += uint64(in.nBlocks)
		}
	}
	if blk > math.MaxUint32 {
		return fmt.Errorf("%w: %d blocks", ErrTooLarge, blk)
	}
	if p.inodes[0].pos/slotSize > math.MaxUint16 {
		return fmt.Errorf("%w: root nid above 65535", ErrTooLarge)
	}
	p.nBlocks = blk
	return nil
}

func (in *inode) isize() int64 {
	if in.extended() {
		return extendedInodeSize
	}
	return compactInodeSize
}

// place positions in at pos (§7.3) and returns the position after it.
func (in *inode) place(pos int64) int64 {
	pos = roundUp(pos, slotSize)
	head := in.isize() + int64(in.xattrSize)
	tail := int64(in.tail)
	if in.typ() == tree.TypeSymlink {
		total := head + tail
		if total >= blkSize {
			in.nBlocks, in.tail = 1, 0
		}
		if pos/blkSize != (pos+total-1)/blkSize {
			pos = roundUp(pos, blkSize)
		}
	} else if r := blkSize - (pos+head)%blkSize; r < tail {
		e := roundUp(r, slotSize)
		if r2 := blkSize - (pos+head+e)%blkSize; tail <= r2 {
			pos += e
		} else {
			in.nBlocks++
			in.tail = 0
			pos = roundUp(pos, blkSize)
		}
	}
	in.pos = pos
	return pos + head + int64(in.tail)
}

// cmpXattr orders xattrs by key in byte order.
func cmpXattr(a, b tree.Xattr) int { return strings.Compare(a.Name, b.Name) }
