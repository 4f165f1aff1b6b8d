package erofs

import (
	"fmt"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// rawDirent is a decoded directory entry.
type rawDirent struct {
	name string
	nid  uint64
	typ  uint8
}

// readDir decodes all entries of directory ri, "." and ".." included.
func (img *Image) readDir(ri *rawInode) ([]rawDirent, error) {
	if ri.typ() != tree.TypeDir {
		return nil, fmt.Errorf("%w: nid %d: not a directory", ErrCorrupt, ri.nid)
	}
	data, err := img.data(ri, uint64(img.size))
	if err != nil {
		return nil, err
	}
	var out []rawDirent
	err = eachDirent(data, func(name []byte, nid uint64, typ uint8) bool {
		out = append(out, rawDirent{name: string(name), nid: nid, typ: typ})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("nid %d: %w", ri.nid, err)
	}
	return out, nil
}

// eachDirent calls fn for every entry of directory data until fn returns
// false.
func eachDirent(data []byte, fn func(name []byte, nid uint64, typ uint8) bool) error {
	for off := 0; off < len(data); off += blkSize {
		more, err := direntChunk(data[off:min(off+blkSize, len(data))], fn)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// direntChunk decodes the dirents of one block or inline tail.
func direntChunk(chunk []byte, fn func(name []byte, nid uint64, typ uint8) bool) (bool, error) {
	if len(chunk) < direntSize {
		return false, fmt.Errorf("%w: directory chunk of %d bytes", ErrCorrupt, len(chunk))
	}
	first := int(le.Uint16(chunk[offDeNameOff:]))
	if first < direntSize || first%direntSize != 0 || first > len(chunk) {
		return false, fmt.Errorf("%w: bad first nameoff %d", ErrCorrupt, first)
	}
	n := first / direntSize
	for i := 0; i < n; i++ {
		de := chunk[i*direntSize:]
		start := int(le.Uint16(de[offDeNameOff:]))
		end := len(chunk)
		if i+1 < n {
			end = int(le.Uint16(chunk[(i+1)*direntSize+offDeNameOff:]))
		}
		if start < first || end < start || end > len(chunk) {
			return false, fmt.Errorf("%w: bad nameoff %d..%d", ErrCorrupt, start, end)
		}
		name := chunk[start:end]
		if i+1 == n {
			name = cStr(name) // the last name of a block ends at a NUL or the end
		}
		if len(name) == 0 || len(name) > tree.MaxNameLen {
			return false, fmt.Errorf("%w: dirent name of %d bytes", ErrCorrupt, len(name))
		}
		if !fn(name, le.Uint64(de[offDeNid:]), de[offDeFileType]) {
			return false, nil
		}
	}
	return true, nil
}

func cStr(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// xattrs returns the inode's raw xattrs: local entries in stored order,
// then shared ones in the inode's reference order (as composefs-info).
func (img *Image) xattrs(ri *rawInode) ([]tree.Xattr, error) {
	if ri.xattrSize == 0 {
		return nil, nil
	}
	body := make([]byte, ri.xattrSize)
	if err := img.readAt(body, ri.headEnd-ri.xattrSize); err != nil {
		return nil, err
	}
	nShared := int(body[offXhSharedCount])
	pos := xattrIBodyHeaderSize + 4*nShared
	if pos > len(body) {
		return nil, fmt.Errorf("%w: nid %d: %d shared xattrs overflow the body", ErrCorrupt, ri.nid, nShared)
	}
	var out []tree.Xattr
	for pos < len(body) {
		x, n, err := decodeXattr(body[pos:])
		if err != nil {
			return nil, fmt.Errorf("nid %d: %w", ri.nid, err)
		}
		out = append(out, x)
		pos += n
	}
	for i := 0; i < nShared; i++ {
		id := int64(le.Uint32(body[xattrIBodyHeaderSize+4*i:]))
		x, err := img.sharedXattr(id)
		if err != nil {
			return nil, fmt.Errorf("nid %d: %w", ri.nid, err)
		}
		out = append(out, x)
	}
	return out, nil
}

// sharedXattr reads the shared xattr with the given id.
func (img *Image) sharedXattr(id int64) (tree.Xattr, error) {
	off := img.xattrBlk*blkSize + id*4
	var hdr [xattrEntryHeaderSize]byte
	if err := img.readAt(hdr[:], off); err != nil {
		return tree.Xattr{}, err
	}
	n := xattrEntryHeaderSize + int(hdr[offXeNameLen]) + int(le.Uint16(hdr[offXeValueSize:]))
	b := make([]byte, n)
	if err := img.readAt(b, off); err != nil {
		return tree.Xattr{}, err
	}
	x, _, err := decodeXattr(b)
	return x, err
}

// decodeXattr decodes one xattr entry and returns it with its padded size.
func decodeXattr(b []byte) (tree.Xattr, int, error) {
	if len(b) < xattrEntryHeaderSize {
		return tree.Xattr{}, 0, fmt.Errorf("%w: truncated xattr entry", ErrCorrupt)
	}
	nameLen, idx := int(b[offXeNameLen]), b[offXeNameIndex]
	valLen := int(le.Uint16(b[offXeValueSize:]))
	end := xattrEntryHeaderSize + nameLen + valLen
	if end > len(b) {
		return tree.Xattr{}, 0, fmt.Errorf("%w: xattr entry overflows its area", ErrCorrupt)
	}
	prefix, ok := prefixForIndex(idx)
	if !ok {
		if idx != xattrIndexLustre {
			return tree.Xattr{}, 0, fmt.Errorf("%w: unknown xattr name index %d", ErrCorrupt, idx)
		}
		prefix = "lustre."
	}
	name := prefix + string(b[xattrEntryHeaderSize:xattrEntryHeaderSize+nameLen])
	if name == "" {
		return tree.Xattr{}, 0, fmt.Errorf("%w: empty xattr name", ErrCorrupt)
	}
	value := append([]byte{}, b[xattrEntryHeaderSize+nameLen:end]...)
	return tree.Xattr{Name: name, Value: value}, min(roundUp(end, 4), len(b)), nil
}
