package erofs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// ErrCorrupt is wrapped by every error about malformed image contents.
var ErrCorrupt = errors.New("erofs: corrupt image")

// maxSymlink bounds symlink targets read from an image.
const maxSymlink = blkSize - 1

// Image is an opened composefs image. It is an fs.FS over the raw EROFS
// file system (what a kernel mount shows: whiteout stubs, escaped overlay
// xattrs and metacopy stubs included; see Xattrs), and Tree returns the
// composefs view (what composefs-info dump prints).
//
// An Image is safe for concurrent use if its io.ReaderAt is.
type Image struct {
	r        io.ReaderAt
	size     int64
	version  uint32
	flags    uint32
	rootNid  uint64
	inos     uint64
	build    tree.Time
	xattrBlk int64
	objects  fs.FS
	cache    *dirCache // shared by copies made by WithObjects
}

// Open reads the header and superblock of the image of size bytes in r.
// Malformed input gives an error wrapping ErrCorrupt, never a panic.
func Open(r io.ReaderAt, size int64) (*Image, error) {
	if size < inodeStart {
		return nil, fmt.Errorf("%w: %d bytes is too small", ErrCorrupt, size)
	}
	b := make([]byte, inodeStart)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("erofs: read superblock: %w", err)
	}
	if m := le.Uint32(b[offCfsMagic:]); m != cfsMagic {
		return nil, fmt.Errorf("%w: bad composefs magic %#x", ErrCorrupt, m)
	}
	sb := b[sbOffset:]
	if m := le.Uint32(sb[offSbMagic:]); m != sbMagic {
		return nil, fmt.Errorf("%w: bad EROFS magic %#x", ErrCorrupt, m)
	}
	if sb[offSbBlkSzBits] != blkSizeBits {
		return nil, fmt.Errorf("%w: block size bits %d, want %d", ErrCorrupt, sb[offSbBlkSzBits], blkSizeBits)
	}
	if le.Uint32(sb[offSbMetaBlkAddr:]) != 0 || sb[offSbExtSlots] != 0 {
		return nil, fmt.Errorf("%w: unsupported meta_blkaddr or sb_extslots", ErrCorrupt)
	}
	return &Image{
		r:        r,
		size:     size,
		version:  le.Uint32(b[offCfsFormatVer:]),
		flags:    le.Uint32(b[offCfsFlags:]),
		rootNid:  uint64(le.Uint16(sb[offSbRootNid:])),
		inos:     le.Uint64(sb[offSbInos:]),
		build:    tree.Time{Sec: int64(le.Uint64(sb[offSbBuildTime:])), Nsec: le.Uint32(sb[offSbBuildTimeNsec:])},
		xattrBlk: int64(le.Uint32(sb[offSbXattrBlkAddr:])),
		cache:    &dirCache{},
	}, nil
}

// Version returns the composefs format version from the header (0 or 1).
func (img *Image) Version() uint32 { return img.version }

// HasACL reports whether the header's HAS_ACL flag is set.
func (img *Image) HasACL() bool { return img.flags&cfsFlagHasACL != 0 }

// Inodes returns the superblock's inode count.
func (img *Image) Inodes() uint64 { return img.inos }

// WithObjects returns a copy of img whose external regular files are read
// from objects, at their redirect path (without the leading slash).
func (img *Image) WithObjects(objects fs.FS) *Image {
	c := *img
	c.objects = objects
	return &c
}

// readAt reads exactly len(b) bytes at off, which must lie in the image.
func (img *Image) readAt(b []byte, off int64) error {
	if off < 0 || off > img.size || int64(len(b)) > img.size-off {
		return fmt.Errorf("%w: read of %d bytes at %d beyond image end %d", ErrCorrupt, len(b), off, img.size)
	}
	if _, err := img.r.ReadAt(b, off); err != nil {
		return fmt.Errorf("erofs: read at %d: %w", off, err)
	}
	return nil
}

// rawInode is a decoded on-disk inode.
type rawInode struct {
	nid       uint64
	extended  bool
	layout    uint16
	mode      uint32
	nlink     uint32
	size      uint64
	u         uint32
	ino       uint32
	uid, gid  uint32
	mtime     tree.Time
	xattrSize int64 // in-inode xattr body size, 0 if none
	headEnd   int64 // image offset just after the inode and its xattr body
}

func (ri *rawInode) typ() uint32 { return ri.mode & tree.TypeMask }

// inode decodes the inode at nid.
func (img *Image) inode(nid uint64) (*rawInode, error) {
	if nid > uint64(img.size)/slotSize {
		return nil, fmt.Errorf("%w: nid %d beyond image", ErrCorrupt, nid)
	}
	off := int64(nid) * slotSize
	var b [extendedInodeSize]byte
	n := int64(compactInodeSize)
	if err := img.readAt(b[:n], off); err != nil {
		return nil, err
	}
	format := le.Uint16(b[offIFormat:])
	ri := &rawInode{nid: nid, extended: format&inodeLayoutExtended != 0, layout: format >> 1 & 7}
	if format>>4 != 0 {
		return nil, fmt.Errorf("%w: nid %d: unsupported i_format %#x", ErrCorrupt, nid, format)
	}
	ri.mode = uint32(le.Uint16(b[offIMode:]))
	if ri.extended {
		n = extendedInodeSize
		if err := img.readAt(b[:n], off); err != nil {
			return nil, err
		}
		ri.size = le.Uint64(b[offESize:])
		ri.u, ri.ino = le.Uint32(b[offEU:]), le.Uint32(b[offEIno:])
		ri.uid, ri.gid = le.Uint32(b[offEUID:]), le.Uint32(b[offEGID:])
		ri.mtime = tree.Time{Sec: int64(le.Uint64(b[offEMtime:])), Nsec: le.Uint32(b[offEMtimeNsec:])}
		ri.nlink = le.Uint32(b[offENlink:])
	} else {
		ri.nlink = uint32(le.Uint16(b[offCNlink:]))
		ri.size = uint64(le.Uint32(b[offCSize:]))
		ri.u, ri.ino = le.Uint32(b[offCU:]), le.Uint32(b[offCIno:])
		ri.uid, ri.gid = uint32(le.Uint16(b[offCUID:])), uint32(le.Uint16(b[offCGID:]))
		ri.mtime = img.build
	}
	if icount := int64(le.Uint16(b[offIXattrICount:])); icount > 0 {
		ri.xattrSize = xattrIBodyHeaderSize + (icount-1)*4
	}
	ri.headEnd = off + n + ri.xattrSize
	if !tree.ValidType(ri.mode) {
		return nil, fmt.Errorf("%w: nid %d: invalid mode %o", ErrCorrupt, nid, ri.mode)
	}
	if ri.headEnd > img.size {
		return nil, fmt.Errorf("%w: nid %d: inode beyond image end", ErrCorrupt, nid)
	}
	return ri, nil
}

// data returns the bytes of a FLAT_PLAIN or FLAT_INLINE inode (directory,
// symlink or inline regular file). limit bounds the size accepted.
func (img *Image) data(ri *rawInode, limit uint64) ([]byte, error) {
	if ri.size > limit || ri.size > uint64(img.size) {
		return nil, fmt.Errorf("%w: nid %d: size %d too large", ErrCorrupt, ri.nid, ri.size)
	}
	size := int64(ri.size)
	var nBlocks, tail int64
	switch ri.layout {
	case layoutFlatPlain:
		nBlocks = (size + blkSize - 1) / blkSize
	case layoutFlatInline:
		// As the kernel: the last (possibly partial) block is inline.
		nBlocks = (size+blkSize-1)/blkSize - 1
		tail = size - nBlocks*blkSize
		if size == 0 {
			nBlocks, tail = 0, 0
		}
	default:
		return nil, fmt.Errorf("%w: nid %d: unsupported data layout %d", ErrCorrupt, ri.nid, ri.layout)
	}
	out := make([]byte, size)
	if nBlocks > 0 {
		if err := img.readAt(out[:size-tail], int64(ri.u)*blkSize); err != nil {
			return nil, fmt.Errorf("nid %d data blocks: %w", ri.nid, err)
		}
	}
	if tail > 0 {
		if ri.headEnd/blkSize != (ri.headEnd+tail-1)/blkSize {
			return nil, fmt.Errorf("%w: nid %d: inline tail crosses a block boundary", ErrCorrupt, ri.nid)
		}
		if err := img.readAt(out[size-tail:], ri.headEnd); err != nil {
			return nil, fmt.Errorf("nid %d inline data: %w", ri.nid, err)
		}
	}
	return out, nil
}
