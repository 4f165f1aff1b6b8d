package erofs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// ErrNoObjects is returned when reading an external file of an image that
// has no object store (see WithObjects).
var ErrNoObjects = errors.New("erofs: external file and no object store")

// maxSymlinkHops bounds symlink resolution, as the kernel's MAXSYMLINKS.
const maxSymlinkHops = 40

// InodeInfo is what FileInfo.Sys returns for files of an Image.
type InodeInfo struct {
	Nid   uint64 // inode slot number (byte offset / 32)
	Ino   uint32 // i_ino
	Mode  uint32 // raw st_mode (type and permission bits)
	UID   uint32
	GID   uint32
	Nlink uint32
	Rdev  uint32 // raw dev_t of devices
	Mtime tree.Time
}

// lookup resolves name (a valid fs.FS path) to an inode. Symlinks are
// followed in every component, and in the last one if followLast; absolute
// targets resolve from the image root and ".." never leaves it.
func (img *Image) lookup(name string, followLast bool) (*rawInode, error) {
	if !fs.ValidPath(name) {
		return nil, fs.ErrInvalid
	}
	root, err := img.inode(img.rootNid)
	if err != nil {
		return nil, err
	}
	parts, hops := splitFSPath(name), 0
	dirPath := []string{}
	cur := root
	for i := 0; i < len(parts); i++ {
		if cur.typ() != tree.TypeDir {
			return nil, fmt.Errorf("%s: %w", strings.Join(parts[:i], "/"), errNotDir)
		}
		next, err := img.child(cur, parts[i])
		if err != nil {
			return nil, err
		}
		if next.typ() != tree.TypeSymlink || (i == len(parts)-1 && !followLast) {
			cur = next
			dirPath = append(dirPath, parts[i])
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return nil, fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		target, err := img.data(next, maxSymlink)
		if err != nil {
			return nil, err
		}
		base := "/" + strings.Join(dirPath, "/")
		if strings.HasPrefix(string(target), "/") {
			base = "/"
		}
		rest := path.Join(append([]string{base, string(target)}, parts[i+1:]...)...)
		parts, i, cur, dirPath = splitFSPath(path.Clean(rest)), -1, root, dirPath[:0]
	}
	return cur, nil
}

var errNotDir = errors.New("not a directory")

func splitFSPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" || p == "." {
		return nil
	}
	return strings.Split(p, "/")
}

// child returns the inode of directory dir's entry name. A directory is
// returned only if its ".." entry points back at dir: on a well-formed
// image every directory has one parent, and this keeps hostile images
// from presenting directory cycles (or exponential DAGs) to fs.WalkDir.
// (Directory hard links, a dumpfile quirk, are therefore not reachable
// through the fs.FS view; Tree shows them.)
func (img *Image) child(dir *rawInode, name string) (*rawInode, error) {
	if name == "." || name == ".." {
		return nil, fs.ErrNotExist
	}
	nid, found, err := img.entryNid(dir, name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fs.ErrNotExist
	}
	ri, err := img.inode(nid)
	if err != nil {
		return nil, err
	}
	if ri.typ() == tree.TypeDir {
		up, ok, err := img.entryNid(ri, "..")
		if err != nil {
			return nil, err
		}
		if !ok || up != dir.nid {
			return nil, fmt.Errorf("%w: directory %q (nid %d) has another parent", ErrCorrupt, name, nid)
		}
	}
	return ri, nil
}

// entryNid finds the nid of directory dir's entry name.
func (img *Image) entryNid(dir *rawInode, name string) (uint64, bool, error) {
	if dir.typ() != tree.TypeDir {
		return 0, false, errNotDir
	}
	ents, err := img.sortedDir(dir)
	if err != nil {
		return 0, false, err
	}
	i, found := slices.BinarySearchFunc(ents, name, func(e rawDirent, n string) int { return strings.Compare(e.name, n) })
	if !found {
		return 0, false, nil
	}
	return ents[i].nid, true, nil
}

func pathErr(op, name string, err error) error {
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// Open implements fs.FS. Regular files read their inline data, or for
// external files the object at their redirect path in the store given to
// WithObjects.
func (img *Image) Open(name string) (fs.File, error) {
	ri, err := img.lookup(name, true)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	fi := &fileInfo{name: path.Base(name), ri: ri}
	switch ri.typ() {
	case tree.TypeDir:
		return &dirFile{img: img, fi: fi}, nil
	case tree.TypeReg:
		if ri.layout != layoutChunkBased {
			data, err := img.data(ri, uint64(img.size))
			if err != nil {
				return nil, pathErr("open", name, err)
			}
			return &regFile{fi: fi, r: bytes.NewReader(data)}, nil
		}
		return img.openExternal(name, fi)
	}
	return &regFile{fi: fi, r: bytes.NewReader(nil)}, nil
}

// openExternal opens an external file's object.
func (img *Image) openExternal(name string, fi *fileInfo) (fs.File, error) {
	if img.objects == nil {
		return nil, pathErr("open", name, ErrNoObjects)
	}
	xs, err := img.xattrs(fi.ri)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	for _, x := range xs {
		if x.Name == xattrRedirect {
			f, err := img.objects.Open(strings.TrimPrefix(string(x.Value), "/"))
			if err != nil {
				return nil, pathErr("open", name, err)
			}
			return &objectFile{File: f, fi: fi}, nil
		}
	}
	return nil, pathErr("open", name, fmt.Errorf("%w: no redirect", ErrNoObjects))
}

// Stat implements fs.StatFS (following symlinks).
func (img *Image) Stat(name string) (fs.FileInfo, error) {
	ri, err := img.lookup(name, true)
	if err != nil {
		return nil, pathErr("stat", name, err)
	}
	return &fileInfo{name: path.Base(name), ri: ri}, nil
}

// Lstat implements fs.ReadLinkFS: it does not follow a final symlink.
func (img *Image) Lstat(name string) (fs.FileInfo, error) {
	ri, err := img.lookup(name, false)
	if err != nil {
		return nil, pathErr("lstat", name, err)
	}
	return &fileInfo{name: path.Base(name), ri: ri}, nil
}

// ReadLink implements fs.ReadLinkFS.
func (img *Image) ReadLink(name string) (string, error) {
	ri, err := img.lookup(name, false)
	if err != nil {
		return "", pathErr("readlink", name, err)
	}
	if ri.typ() != tree.TypeSymlink {
		return "", pathErr("readlink", name, fs.ErrInvalid)
	}
	target, err := img.data(ri, maxSymlink)
	if err != nil {
		return "", pathErr("readlink", name, err)
	}
	return string(target), nil
}

// ReadDir implements fs.ReadDirFS: entries sorted by name, without "."
// and "..".
func (img *Image) ReadDir(name string) ([]fs.DirEntry, error) {
	ri, err := img.lookup(name, true)
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	ents, err := img.dirEntries(ri)
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	return ents, nil
}

func (img *Image) dirEntries(ri *rawInode) ([]fs.DirEntry, error) {
	if ri.typ() != tree.TypeDir {
		return nil, errNotDir
	}
	raw, err := img.sortedDir(ri)
	if err != nil {
		return nil, err
	}
	out := make([]fs.DirEntry, 0, len(raw))
	for _, e := range raw {
		if e.name != "." && e.name != ".." {
			out = append(out, &dirEntry{img: img, e: e})
		}
	}
	return out, nil
}

// Xattrs returns the raw xattrs of name as stored (and as a kernel mount
// shows them): local entries in stored order, then shared ones. A final
// symlink is not followed.
func (img *Image) Xattrs(name string) ([]tree.Xattr, error) {
	ri, err := img.lookup(name, false)
	if err != nil {
		return nil, pathErr("xattrs", name, err)
	}
	xs, err := img.xattrs(ri)
	if err != nil {
		return nil, pathErr("xattrs", name, err)
	}
	return xs, nil
}

// fileInfo implements fs.FileInfo for an inode.
type fileInfo struct {
	name string
	ri   *rawInode
}

func (fi *fileInfo) Name() string { return fi.name }
func (fi *fileInfo) Size() int64 {
	if fi.ri.size > 1<<62 {
		return 1 << 62
	}
	return int64(fi.ri.size)
}
func (fi *fileInfo) Mode() fs.FileMode  { return fileMode(fi.ri.mode) }
func (fi *fileInfo) ModTime() time.Time { return time.Unix(fi.ri.mtime.Sec, int64(fi.ri.mtime.Nsec)) }
func (fi *fileInfo) IsDir() bool        { return fi.ri.typ() == tree.TypeDir }
func (fi *fileInfo) Sys() any {
	ri := fi.ri
	info := &InodeInfo{Nid: ri.nid, Ino: ri.ino, Mode: ri.mode, UID: ri.uid, GID: ri.gid, Nlink: ri.nlink, Mtime: ri.mtime}
	if t := ri.typ(); t == tree.TypeChar || t == tree.TypeBlock {
		info.Rdev = ri.u
	}
	return info
}

// fileMode converts a raw st_mode to an fs.FileMode.
func fileMode(mode uint32) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch mode & tree.TypeMask {
	case tree.TypeDir:
		m |= fs.ModeDir
	case tree.TypeSymlink:
		m |= fs.ModeSymlink
	case tree.TypeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case tree.TypeBlock:
		m |= fs.ModeDevice
	case tree.TypeFifo:
		m |= fs.ModeNamedPipe
	case tree.TypeSocket:
		m |= fs.ModeSocket
	}
	return m
}

// dirEntry implements fs.DirEntry.
type dirEntry struct {
	img *Image
	e   rawDirent
}

func (d *dirEntry) Name() string { return d.e.name }
func (d *dirEntry) IsDir() bool  { return d.e.typ == ftDir }
func (d *dirEntry) Type() fs.FileMode {
	types := [...]uint32{0, tree.TypeReg, tree.TypeDir, tree.TypeChar, tree.TypeBlock, tree.TypeFifo, tree.TypeSocket, tree.TypeSymlink}
	if int(d.e.typ) < len(types) {
		return fileMode(types[d.e.typ]).Type()
	}
	return fs.ModeIrregular
}
func (d *dirEntry) Info() (fs.FileInfo, error) {
	ri, err := d.img.inode(d.e.nid)
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: d.e.name, ri: ri}, nil
}

// regFile is an open non-directory file with in-image data.
type regFile struct {
	fi *fileInfo
	r  *bytes.Reader
}

func (f *regFile) Stat() (fs.FileInfo, error)                { return f.fi, nil }
func (f *regFile) Read(b []byte) (int, error)                { return f.r.Read(b) }
func (f *regFile) ReadAt(b []byte, off int64) (int, error)   { return f.r.ReadAt(b, off) }
func (f *regFile) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }
func (f *regFile) Close() error                              { return nil }

// objectFile is an open external file: the object's data with the image's
// metadata.
type objectFile struct {
	fs.File
	fi *fileInfo
}

func (f *objectFile) Stat() (fs.FileInfo, error) { return f.fi, nil }

// dirFile is an open directory.
type dirFile struct {
	img  *Image
	fi   *fileInfo
	ents []fs.DirEntry
	read bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.fi, nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, pathErr("read", d.fi.name, errors.New("is a directory"))
}
func (d *dirFile) Close() error { return nil }

// ReadDir implements fs.ReadDirFile.
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		ents, err := d.img.dirEntries(d.fi.ri)
		if err != nil {
			return nil, pathErr("readdir", d.fi.name, err)
		}
		d.ents, d.read = ents, true
	}
	if n <= 0 {
		out := d.ents
		d.ents = nil
		return out, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	k := min(n, len(d.ents))
	out := d.ents[:k:k]
	d.ents = d.ents[k:]
	return out, nil
}
