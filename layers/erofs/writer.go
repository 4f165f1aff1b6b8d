package erofs

import (
	"bufio"
	"fmt"
	"io"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Write writes t as a composefs EROFS image to w, byte-identical to what
// libcomposefs' `mkcomposefs` 1.0.x writes for the same tree. t is not
// modified. The output is deterministic.
func Write(w io.Writer, t *tree.Tree, opts Options) error {
	p, err := newPlan(t, opts)
	if err != nil {
		return err
	}
	e := &emitter{w: bufio.NewWriterSize(w, 256<<10), p: p}
	e.writeSuper()
	for _, in := range p.inodes {
		e.writeInode(in)
	}
	e.zeros(p.inodesEnd - e.off)
	for _, s := range p.shared {
		e.buf = appendXattrEntry(e.buf[:0], s.key, s.value)
		e.write(e.buf)
	}
	e.zeros(p.dataStart - e.off)
	for _, in := range p.inodes {
		if in.nBlocks > 0 {
			e.writeBlocks(in)
		}
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	if e.err != nil {
		return fmt.Errorf("erofs: write image: %w", e.err)
	}
	return nil
}

// emitter writes the planned image sequentially.
type emitter struct {
	w   *bufio.Writer
	p   *plan
	off int64
	buf []byte
	val []byte // derived xattr values (see xattrAt)
	err error
}

func (e *emitter) write(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
	e.off += int64(len(b))
}

var zeroBlock [blkSize]byte

func (e *emitter) zeros(n int64) {
	for n > 0 {
		k := min(n, blkSize)
		e.write(zeroBlock[:k])
		n -= k
	}
}

// writeSuper writes the composefs header, padding and EROFS superblock.
func (e *emitter) writeSuper() {
	p := e.p
	b := make([]byte, inodeStart)
	le.PutUint32(b[offCfsMagic:], cfsMagic)
	le.PutUint32(b[offCfsVersion:], cfsHeaderVer)
	le.PutUint32(b[offCfsFlags:], p.flags)
	le.PutUint32(b[offCfsFormatVer:], p.version)
	sb := b[sbOffset:]
	le.PutUint32(sb[offSbMagic:], sbMagic)
	le.PutUint32(sb[offSbFeatureCompat:], featureCompatMtime|featureCompatXattrFilter)
	sb[offSbBlkSzBits] = blkSizeBits
	le.PutUint16(sb[offSbRootNid:], uint16(p.inodes[0].nid()))
	le.PutUint64(sb[offSbInos:], uint64(len(p.inodes)))
	le.PutUint64(sb[offSbBuildTime:], uint64(p.minMtime.Sec))
	le.PutUint32(sb[offSbBuildTimeNsec:], p.minMtime.Nsec)
	le.PutUint32(sb[offSbBlocks:], uint32(p.nBlocks))
	le.PutUint32(sb[offSbXattrBlkAddr:], uint32(p.inodesEnd/blkSize))
	e.write(b)
}

// layoutOf returns the inode's datalayout.
func (in *inode) layoutOf() uint16 {
	switch {
	case in.isExternal():
		return layoutChunkBased
	case in.tail > 0:
		return layoutFlatInline
	}
	return layoutFlatPlain
}

// iSize returns the i_size field.
func (in *inode) iSize() uint64 {
	switch in.typ() {
	case tree.TypeDir:
		return uint64(in.nBlocks)*blkSize + uint64(in.tail)
	case tree.TypeReg, tree.TypeSymlink:
		return in.size
	}
	return 0
}

// iU returns the i_u union field.
func (in *inode) iU() uint32 {
	switch in.typ() {
	case tree.TypeChar, tree.TypeBlock:
		return in.rdev()
	case tree.TypeReg:
		if in.isExternal() {
			// The chunk format overwrites the low half of the block
			// address in the non-inline chunk-map case (§7.3).
			return in.blkaddr&0xFFFF0000 | uint32(in.chunkBits-blkSizeBits)
		}
	}
	if in.nBlocks > 0 {
		return in.blkaddr
	}
	return 0
}

// writeInode writes padding, the inode, its xattr body and inline tail.
func (e *emitter) writeInode(in *inode) {
	e.zeros(in.pos - e.off)
	b := e.buf[:0]
	b = appendInode(b, in)
	b = e.appendXattrBody(b, in)
	b = appendTail(b, in)
	e.buf = b
	e.write(b)
}

func appendInode(b []byte, in *inode) []byte {
	start := len(b)
	var zero [extendedInodeSize]byte
	b = append(b, zero[:in.isize()]...)
	d := b[start:]
	icount := int32(0)
	if in.xattrSize > 0 {
		icount = (in.xattrSize-xattrIBodyHeaderSize)/4 + 1
	}
	format := in.layoutOf() << 1
	le.PutUint16(d[offIXattrICount:], uint16(icount))
	le.PutUint16(d[offIMode:], uint16(in.mode))
	if !in.extended() {
		le.PutUint16(d[offIFormat:], format)
		le.PutUint16(d[offCNlink:], uint16(in.nlink))
		le.PutUint32(d[offCSize:], uint32(in.iSize()))
		le.PutUint32(d[offCU:], in.iU())
		le.PutUint32(d[offCIno:], in.ino)
		le.PutUint16(d[offCUID:], uint16(in.src.UID))
		le.PutUint16(d[offCGID:], uint16(in.src.GID))
		return b
	}
	le.PutUint16(d[offIFormat:], format|inodeLayoutExtended)
	le.PutUint64(d[offESize:], in.iSize())
	le.PutUint32(d[offEU:], in.iU())
	le.PutUint32(d[offEIno:], in.ino)
	le.PutUint32(d[offEUID:], in.src.UID)
	le.PutUint32(d[offEGID:], in.src.GID)
	le.PutUint64(d[offEMtime:], uint64(in.src.Mtime.Sec))
	le.PutUint32(d[offEMtimeNsec:], in.src.Mtime.Nsec)
	le.PutUint32(d[offENlink:], in.nlink)
	return b
}

// appendXattrBody appends the in-inode xattr body (§6.3).
func (e *emitter) appendXattrBody(b []byte, in *inode) []byte {
	if in.xattrSize == 0 {
		return b
	}
	n := in.numXattrs()
	var filter uint32
	for i := range n {
		idx, name := xattrIndex(in.xattrKey(i))
		filter |= 1 << (xxh32([]byte(name), xattrFilterSeed+uint32(idx)) & 31)
	}
	var hdr [xattrIBodyHeaderSize]byte
	le.PutUint32(hdr[offXhNameFilter:], ^filter)
	hdr[offXhSharedCount] = uint8(in.nShared)
	b = append(b, hdr[:]...)
	base := e.p.inodesEnd % blkSize
	for i := range n {
		if id := e.p.sharedID(in, i); id >= 0 {
			b = le.AppendUint32(b, uint32((base+e.p.shared[id].offset)/4))
		}
	}
	for i := range n {
		if e.p.sharedID(in, i) < 0 {
			key, value := in.xattrAt(i, &e.val)
			b = appendXattrEntry(b, key, value)
		}
	}
	return b
}

// appendXattrEntry appends one encoded xattr entry (§6.2).
func appendXattrEntry(b []byte, key string, value []byte) []byte {
	idx, name := xattrIndex(key)
	start := len(b)
	b = append(b, uint8(len(name)), idx, 0, 0)
	le.PutUint16(b[start+offXeValueSize:], uint16(len(value)))
	b = append(b, name...)
	b = append(b, value...)
	for (len(b)-start)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendTail appends the inline data that follows the xattr body (§7.5).
func appendTail(b []byte, in *inode) []byte {
	if in.tail == 0 {
		return b
	}
	switch in.typ() {
	case tree.TypeDir:
		last, end := 0, 0
		dirGroups(in.ents, func(from, to int) { last, end = from, to })
		return appendDirents(b, in, last, end)
	case tree.TypeSymlink:
		return append(b, in.src.Target...)
	case tree.TypeReg:
		if in.isExternal() {
			for i := 0; i < int(in.chunkCount); i++ {
				b = le.AppendUint32(b, nullAddr)
			}
			return b
		}
		return append(b, in.src.Content[len(in.src.Content)-int(in.tail):]...)
	}
	return b
}

// appendDirents appends the dirent group of entries [from, to) (§8.2).
func appendDirents(b []byte, in *inode, from, to int) []byte {
	ents := in.ents[from:to]
	nameOff := direntSize * len(ents)
	for _, d := range ents {
		var de [direntSize]byte
		le.PutUint64(de[offDeNid:], d.in.nid())
		le.PutUint16(de[offDeNameOff:], uint16(nameOff))
		de[offDeFileType] = d.in.fileType()
		b = append(b, de[:]...)
		nameOff += len(d.name)
	}
	for _, d := range ents {
		b = append(b, d.name...)
	}
	return b
}

// writeBlocks writes an inode's data blocks (§8.1).
func (e *emitter) writeBlocks(in *inode) {
	want := e.off + int64(in.nBlocks)*blkSize
	switch in.typ() {
	case tree.TypeDir:
		g := 0
		dirGroups(in.ents, func(from, to int) {
			if g++; g <= int(in.nBlocks) {
				e.buf = appendDirents(e.buf[:0], in, from, to)
				e.write(e.buf)
				e.zeros(blkSize - int64(len(e.buf)))
			}
		})
	case tree.TypeSymlink:
		e.write([]byte(in.src.Target))
	case tree.TypeReg:
		if in.isExternal() {
			for i := 0; i < blkSize/chunkMapEntrySize; i++ {
				e.buf = le.AppendUint32(e.buf[:0], nullAddr)
				e.write(e.buf)
			}
		} else {
			e.write(in.src.Content[:len(in.src.Content)-int(in.tail)])
		}
	}
	e.zeros(want - e.off)
}
