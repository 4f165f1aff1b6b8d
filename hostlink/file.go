package hostlink

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/hostlink/gvariant"
)

// bareUserMetaXattr is the xattr holding a bare-user object's real
// metadata.
const bareUserMetaXattr = "user.ostreemeta"

// fileInfo is the logical metadata of a file object: what a checkout
// would create, which is what ostree checksums (not the object file's own
// metadata, which differs in bare-user and bare-user-only repositories).
type fileInfo struct {
	UID, GID uint32
	// Mode is the full st_mode: S_IFREG or S_IFLNK plus permissions.
	Mode uint32
	// Size is the content size of a regular file, 0 for a symlink.
	Size int64
	// Target is a symlink's target.
	Target string
	// Xattrs are sorted by name, as ostree stores them.
	Xattrs []xattr
}

// IsRegular reports whether the file object is a regular file.
func (fi *fileInfo) IsRegular() bool { return fi.Mode&unix.S_IFMT == unix.S_IFREG }

// IsSymlink reports whether the file object is a symbolic link.
func (fi *fileInfo) IsSymlink() bool { return fi.Mode&unix.S_IFMT == unix.S_IFLNK }

// readFileInfo returns the logical metadata of a file object: from the
// object's stat and xattrs (bare), from its user.ostreemeta xattr
// (bare-user), or from its stat with uid and gid 0 (bare-user-only).
// Nothing is read from the content except a bare-user symlink's target.
func (r *Repo) readFileInfo(c checksum) (*fileInfo, error) {
	p := r.fileObjectPath(c)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w: file %s: %w", errMissingObject, c, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("stat %s: %w", p, err)
	}
	fi, err := r.fileInfoFromStat(p, &st)
	if err != nil {
		return nil, fmt.Errorf("file object %s: %w", c, err)
	}
	return fi, nil
}

// fileInfoFromStat builds the logical metadata of the object at p.
func (r *Repo) fileInfoFromStat(p string, st *unix.Stat_t) (*fileInfo, error) {
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFREG && typ != unix.S_IFLNK {
		return nil, fmt.Errorf("%w: %s: not a regular file or symlink (mode %o)", errCorrupt, p, st.Mode)
	}
	switch r.mode {
	case modeBareUser:
		if typ != unix.S_IFREG {
			return nil, fmt.Errorf("%w: %s: bare-user objects are regular files (mode %o)", errCorrupt, p, st.Mode)
		}
		return r.bareUserInfo(p, st)
	case modeBareUserOnly:
		fi := &fileInfo{Mode: st.Mode}
		return fi, fillContentInfo(fi, p, st)
	}
	fi := &fileInfo{UID: st.Uid, GID: st.Gid, Mode: st.Mode}
	xs, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	fi.Xattrs = xs
	return fi, fillContentInfo(fi, p, st)
}

// fillContentInfo sets Size or Target from an object that is stored as
// itself (a regular file or a real symlink). Reading a symlink's target
// is a plain read, but the kernel has no O_NOATIME for readlink: under
// relatime it may refresh the symlink's atime, as `ostree ls` does.
func fillContentInfo(fi *fileInfo, p string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		t, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("reading symlink object: %w", err)
		}
		fi.Target = t
		return nil
	}
	fi.Size = st.Size
	return nil
}

// bareUserInfo decodes a bare-user object's user.ostreemeta.
func (r *Repo) bareUserInfo(p string, st *unix.Stat_t) (*fileInfo, error) {
	raw, err := getXattr(p, bareUserMetaXattr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: reading %s: %w", errCorrupt, p, bareUserMetaXattr, err)
	}
	v, err := gvariant.Decode(r.t.bareUser, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s: %w", errCorrupt, p, bareUserMetaXattr, err)
	}
	t := v.([]any)
	fi := &fileInfo{UID: be32(t[0].(uint32)), GID: be32(t[1].(uint32)), Mode: be32(t[2].(uint32)),
		Xattrs: xattrsFromVariant(t[3])}
	switch fi.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		fi.Size = st.Size
	case unix.S_IFLNK:
		// The content is the target (ostree writes it NUL-terminated).
		if st.Size > unix.PathMax {
			return nil, fmt.Errorf("%w: %s: symlink target of %d bytes", errCorrupt, p, st.Size)
		}
		data, err := readFileNoatime(p)
		if err != nil {
			return nil, fmt.Errorf("reading symlink target: %w", err)
		}
		fi.Target = string(bytes.TrimRight(data, "\x00"))
	default:
		return nil, fmt.Errorf("%w: %s: %s mode %o", errCorrupt, p, bareUserMetaXattr, fi.Mode)
	}
	return fi, nil
}

// readXattrs returns the xattrs of p (not following symlinks), sorted by
// name as ostree sorts them. Xattrs with an empty value are left out:
// ostree never records them, so they are not part of any checksum.
func readXattrs(p string) ([]xattr, error) {
	buf := make([]byte, 1024)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
		}
		buf = buf[:n]
		break
	}
	var xs []xattr
	for _, name := range bytes.Split(buf, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v, err := getXattr(p, string(name))
		if err != nil {
			return nil, err
		}
		if len(v) == 0 {
			continue
		}
		xs = append(xs, xattr{Name: string(name), Value: v})
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	return xs, nil
}

// getXattr reads one xattr of p (not following symlinks).
func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Lgetxattr(p, name, nil)
			if err != nil {
				return nil, fmt.Errorf("xattr %s of %s: %w", name, p, err)
			}
			buf = make([]byte, sz+1)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %s of %s: %w", name, p, err)
		}
		return buf[:n:n], nil
	}
}

// openNoatime opens p read-only without updating its atime where
// permitted (O_NOATIME needs ownership or CAP_FOWNER), falling back to a
// plain read-only open.
func openNoatime(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOATIME|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.OpenFile(p, os.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	return f, err
}

// readFileNoatime reads a whole file opened with openNoatime.
func readFileNoatime(p string) ([]byte, error) {
	f, err := openNoatime(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// openFile opens the content of a regular file object for reading,
// read-only and without updating its atime where permitted.
func (r *Repo) openFile(c checksum) (*os.File, error) {
	f, err := openNoatime(r.fileObjectPath(c))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: file %s: %w", errMissingObject, c, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening file object %s: %w", c, err)
	}
	return f, nil
}

// fileHeader returns the serialized file header ostree checksums for a
// file with metadata fi: (uuuusa(ayay)) with uid, gid and mode stored
// big-endian, rdev 0, the symlink target and the xattrs.
func (r *Repo) fileHeader(fi *fileInfo) ([]byte, error) {
	v := []any{be32(fi.UID), be32(fi.GID), be32(fi.Mode), uint32(0), fi.Target, xattrsToVariant(fi.Xattrs)}
	return gvariant.Encode(r.t.header, v)
}

// checksumFile recomputes the ostree checksum of a file object from its
// metadata and content: SHA-256 over the header's size (32-bit
// big-endian), four zero bytes, the serialized header, then the content
// of a regular file. It equals the object's name unless the object is
// damaged.
func (r *Repo) checksumFile(c checksum) (checksum, error) {
	fi, err := r.readFileInfo(c)
	if err != nil {
		return checksum{}, err
	}
	hdr, err := r.fileHeader(fi)
	if err != nil {
		return checksum{}, fmt.Errorf("file object %s header: %w", c, err)
	}
	h := newFileChecksum(hdr)
	if fi.IsRegular() {
		f, err := r.openFile(c)
		if err != nil {
			return checksum{}, err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return checksum{}, fmt.Errorf("reading file object %s: %w", c, err)
		}
	}
	var sum checksum
	h.Sum(sum[:0])
	return sum, nil
}

// newFileChecksum starts ostree's checksum of a file object with the
// serialized header hdr: SHA-256 over the header's size (32-bit
// big-endian), four zero bytes and the header; the content follows.
func newFileChecksum(hdr []byte) hash.Hash {
	h := sha256.New()
	var pre [8]byte
	binary.BigEndian.PutUint32(pre[:4], uint32(len(hdr)))
	h.Write(pre[:])
	h.Write(hdr)
	return h
}

// verifyFile recomputes a file object's checksum and returns errCorrupt
// if it differs from the object's name.
func (r *Repo) verifyFile(c checksum) error {
	sum, err := r.checksumFile(c)
	if err != nil {
		return err
	}
	if sum != c {
		return fmt.Errorf("%w: file %s: content and metadata checksum to %s", errCorrupt, c, sum)
	}
	return nil
}
