package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// OCI whiteout names (image-spec layer.md) and the overlay xattr that marks
// an opaque directory in a layer tree.
const (
	WhiteoutPrefix = ".wh."
	WhiteoutMeta   = ".wh..wh."
	WhiteoutOpaque = ".wh..wh..opq"
	OpaqueXattr    = "trusted.overlay.opaque"
)

// Limits on what a layer tar may hold.
const (
	// DefaultInlineLimit is the largest regular file kept inline in the
	// image rather than in the object store.
	DefaultInlineLimit = 64
	// MaxPathLen is the longest entry path accepted (Linux PATH_MAX).
	MaxPathLen = 4096
	// MaxSymlinkLen is the longest symlink target (composefs: < 4096).
	MaxSymlinkLen = 4095
	// DefaultMaxFileSize is the largest regular file composefs can
	// describe (1024 chunks of 2^43 bytes).
	DefaultMaxFileSize = 1 << 53
)

// ErrInvalidTar is wrapped by every error about a malformed or hostile
// layer tar; the message names the entry.
var ErrInvalidTar = errors.New("layers: invalid layer tar")

// Object is where a content put into a Contents lives.
type Object struct {
	// Payload is the object's path relative to the object directory
	// (for example "ab/cdef…"), used as the overlay redirect.
	Payload string
	// Digest is the content's fs-verity SHA-256 digest.
	Digest [32]byte
}

// Contents stores the contents of regular files too large to inline.
type Contents interface {
	// Put stores exactly size bytes read from r.
	Put(ctx context.Context, r io.Reader, size int64) (Object, error)
}

// IDMapper maps a tar entry's owner to the owner stored in the layer (for
// example container IDs to host IDs).
type IDMapper func(uid, gid uint32) (uint32, uint32, error)

// IngestOptions tune Ingest.
type IngestOptions struct {
	// InlineLimit is the largest regular file stored inline (in the
	// tree, not through Contents); 0 inlines none (an empty file has no
	// content to store either way). DefaultInlineLimit is the usual one.
	InlineLimit int64
	// MapIDs, when set, maps every entry's owner.
	MapIDs IDMapper
	// MaxFileSize refuses larger regular files (a sparse entry counts at
	// its expanded size, since its holes are stored as zeros); 0 means
	// DefaultMaxFileSize.
	MaxFileSize int64
	// Workers, when above 1, store contents of up to BufferLimit bytes on
	// that many goroutines while the stream is read on; Contents must then
	// be safe for concurrent use. Larger contents stream in order.
	Workers int
	// BufferLimit is the largest content buffered for a worker; 0 means
	// DefaultBufferLimit.
	BufferLimit int64
}

// DefaultBufferLimit is the largest content IngestOptions.Workers buffer.
const DefaultBufferLimit = 1 << 20

// IngestStats counts what Ingest read.
type IngestStats struct {
	Entries       int
	RegularFiles  int
	ExternalFiles int
	// Bytes is the total size of regular file contents.
	Bytes int64
	// InlineBytes is the part of Bytes stored inline in the image.
	InlineBytes int64
	// RootEntry is true when the tar had an entry for the root directory
	// ("./" or "/"); otherwise the tree's root carries default metadata.
	RootEntry bool
}

// Ingest reads a layer tar in one pass and returns the layer's tree: OCI
// whiteouts become whiteout nodes (character devices 0/0), opaque markers
// set OpaqueXattr on their directory, contents above the inline limit go
// to contents. Nothing is written anywhere but contents.
func Ingest(ctx context.Context, r io.Reader, contents Contents, opts IngestOptions) (*tree.Tree, IngestStats, error) {
	in := ingester{t: tree.New(), contents: contents, opts: opts}
	if in.opts.MaxFileSize == 0 {
		in.opts.MaxFileSize = DefaultMaxFileSize
	}
	if in.opts.BufferLimit == 0 {
		in.opts.BufferLimit = DefaultBufferLimit
	}
	if in.opts.Workers > 1 {
		in.pool = newPutPool(ctx, contents, in.opts.Workers)
	}
	t, err := in.read(ctx, r)
	if in.pool != nil {
		if perr := in.pool.wait(); err == nil && perr != nil {
			err = fmt.Errorf("%w: %w", ErrInvalidTar, perr)
		}
	}
	if err != nil {
		return nil, in.stats, err
	}
	return t, in.stats, nil
}

// read reads the tar entries into the tree.
func (in *ingester) read(ctx context.Context, r io.Reader) (*tree.Tree, error) {
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading entry %d: %w", ErrInvalidTar, in.stats.Entries+1, err)
		}
		in.stats.Entries++
		if err := in.entry(ctx, hdr, tr); err != nil {
			return nil, err
		}
	}
	FixLinks(in.t)
	return in.t, nil
}

type ingester struct {
	t        *tree.Tree
	contents Contents
	opts     IngestOptions
	stats    IngestStats
	pool     *putPool // nil without workers
}

func (in *ingester) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	p, err := CleanPath(hdr.Name)
	if err != nil {
		return fmt.Errorf("%w: entry %q: %w", ErrInvalidTar, hdr.Name, err)
	}
	dir, base := path.Split(p)
	if strings.HasPrefix(base, WhiteoutPrefix) {
		return in.whiteout(hdr, dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeLink:
		return in.hardlink(hdr, p)
	case tar.TypeXGlobalHeader:
		return nil
	}
	n, err := in.node(ctx, hdr, r)
	if err != nil {
		return fmt.Errorf("%w: entry %q: %w", ErrInvalidTar, hdr.Name, err)
	}
	if p == "" {
		if !n.IsDir() {
			return fmt.Errorf("%w: entry %q: the root must be a directory", ErrInvalidTar, hdr.Name)
		}
		setDirMeta(in.t.Root, n)
		in.stats.RootEntry = true
		return nil
	}
	return in.place(hdr.Name, p, n)
}

// place puts n at p, creating missing parent directories. A directory
// entry over an existing directory updates its metadata and keeps its
// entries; any other existing entry is replaced, as tar extraction does.
//
// A whiteout applies to lower layers only (OCI image-spec, layer.md): a
// directory this layer puts where it whited out a name hides the lower
// directory's entries, so it is opaque.
func (in *ingester) place(name, p string, n *tree.Node) error {
	dir, base := path.Split(p)
	parent, err := in.mkdirAll(dir)
	if err != nil {
		return fmt.Errorf("%w: entry %q: parent directory: %w", ErrInvalidTar, name, err)
	}
	old := parent.Child(base)
	if old != nil && old.IsDir() && n.IsDir() {
		setDirMeta(old, n)
		return nil
	}
	if old != nil && old.IsWhiteout() && n.IsDir() {
		n.SetXattr(OpaqueXattr, []byte("y"))
		n.SortXattrs()
	}
	if err := parent.Put(tree.Dirent{Name: base, Node: n}); err != nil {
		return fmt.Errorf("%w: entry %q: %w", ErrInvalidTar, name, err)
	}
	return nil
}

// mkdirAll returns the directory at dir, creating missing parents. A
// parent this layer whited out becomes an opaque directory: the whiteout
// hid the lower entry, the layer's own entries below it stay.
func (in *ingester) mkdirAll(dir string) (*tree.Node, error) {
	parts := tree.SplitPath(dir)
	n := in.t.Root
	for i, name := range parts {
		c := n.Child(name)
		if c == nil {
			break
		}
		if c.IsWhiteout() {
			n.Unlink(name)
			d, err := in.t.Mkdir(strings.Join(parts[:i+1], "/"))
			if err != nil {
				return nil, err
			}
			d.SetXattr(OpaqueXattr, []byte("y"))
			c = d
		}
		if !c.IsDir() {
			break
		}
		n = c
	}
	return in.t.Mkdir(dir)
}

// setDirMeta copies dir metadata from src onto dst, keeping dst's entries
// and its opaque marker.
func setDirMeta(dst, src *tree.Node) {
	opaque, isOpaque := dst.Xattr(OpaqueXattr)
	dst.Mode, dst.UID, dst.GID, dst.Mtime = src.Mode, src.UID, src.GID, src.Mtime
	dst.Xattrs = src.Xattrs
	if isOpaque {
		dst.SetXattr(OpaqueXattr, opaque)
	}
}

func (in *ingester) whiteout(hdr *tar.Header, dir, base string) error {
	parent, err := in.t.Lookup(dir)
	if err == nil && !parent.IsDir() {
		// A whiteout under a path this layer made a non-directory has
		// nothing left to hide: the file already replaced the whole
		// directory (overlay accepts such layers too).
		return nil
	}
	if err != nil {
		if parent, err = in.t.Mkdir(dir); err != nil {
			return fmt.Errorf("%w: whiteout %q: %w", ErrInvalidTar, hdr.Name, err)
		}
	}
	if base == WhiteoutOpaque {
		parent.SetXattr(OpaqueXattr, []byte("y"))
		return nil
	}
	if strings.HasPrefix(base, WhiteoutMeta) {
		return nil // other AUFS metadata (.wh..wh.plnk, …): not content
	}
	name := strings.TrimPrefix(base, WhiteoutPrefix)
	if err := tree.CheckName(name); err != nil {
		return fmt.Errorf("%w: whiteout %q: %w", ErrInvalidTar, hdr.Name, err)
	}
	if old := parent.Child(name); old != nil && !old.IsWhiteout() {
		// A whiteout hides lower layers only, never what its own layer
		// added (OCI image-spec); such a layer could not be exported
		// again as it was pulled. Refused, as the overlay driver does.
		return fmt.Errorf("%w: whiteout %q: %q was added earlier in the same layer, and a whiteout applies only to lower layers", ErrInvalidTar, hdr.Name, path.Join(dir, name))
	}
	wh := &tree.Node{Mode: tree.TypeChar, Nlink: 1, Mtime: timeOf(hdr)}
	if err := parent.Put(tree.Dirent{Name: name, Node: wh}); err != nil {
		return fmt.Errorf("%w: whiteout %q: %w", ErrInvalidTar, hdr.Name, err)
	}
	return nil
}

func (in *ingester) hardlink(hdr *tar.Header, p string) error {
	target, err := CleanPath(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("%w: hard link %q to %q: %w", ErrInvalidTar, hdr.Name, hdr.Linkname, err)
	}
	n, err := in.t.Lookup(target)
	if err != nil {
		return fmt.Errorf("%w: hard link %q: target %q is not in this layer: %w", ErrInvalidTar, hdr.Name, hdr.Linkname, err)
	}
	if n.IsDir() || n.IsWhiteout() {
		return fmt.Errorf("%w: hard link %q: target %q is a directory or whiteout", ErrInvalidTar, hdr.Name, hdr.Linkname)
	}
	if err := in.linkMeta(n, hdr); err != nil {
		return fmt.Errorf("%w: hard link %q: %w", ErrInvalidTar, hdr.Name, err)
	}
	if target == p {
		return nil // a link to itself adds no entry
	}
	dir, base := path.Split(p)
	parent, err := in.t.Mkdir(dir)
	if err != nil {
		return fmt.Errorf("%w: hard link %q: parent directory: %w", ErrInvalidTar, hdr.Name, err)
	}
	if err := parent.Put(tree.Dirent{Name: base, Node: n, HardLink: true}); err != nil {
		return fmt.Errorf("%w: hard link %q: %w", ErrInvalidTar, hdr.Name, err)
	}
	return nil
}

// linkMeta applies a hard link entry's owner, mode, mtime and xattrs to
// the node it links to, as containers/storage's extraction does (the
// entry's metadata lands on the shared inode; mode and mtime are left
// alone on a symlink).
func (in *ingester) linkMeta(n *tree.Node, hdr *tar.Header) error {
	meta, err := in.meta(hdr)
	if err != nil {
		return err
	}
	n.UID, n.GID = meta.UID, meta.GID
	if n.Type() != tree.TypeSymlink {
		n.Mode = n.Type() | meta.Mode
		n.Mtime = meta.Mtime
	}
	for _, x := range meta.Xattrs {
		n.SetXattr(x.Name, x.Value)
	}
	n.SortXattrs()
	return nil
}

// meta reads the type-independent metadata of an entry: permission
// bits, mapped owner, mtime and xattrs.
func (in *ingester) meta(hdr *tar.Header) (*tree.Node, error) {
	n := &tree.Node{Mode: uint32(hdr.Mode) & 0o7777, Nlink: 1, Mtime: timeOf(hdr)}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<32-1 || hdr.Gid > 1<<32-1 {
		return nil, fmt.Errorf("owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	n.UID, n.GID = uint32(hdr.Uid), uint32(hdr.Gid)
	if in.opts.MapIDs != nil {
		var err error
		if n.UID, n.GID, err = in.opts.MapIDs(n.UID, n.GID); err != nil {
			return nil, fmt.Errorf("map owner %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if err := setXattrs(n, hdr); err != nil {
		return nil, err
	}
	return n, nil
}

// node builds the node of a non-link, non-whiteout entry, storing its
// content.
func (in *ingester) node(ctx context.Context, hdr *tar.Header, r io.Reader) (*tree.Node, error) {
	n, err := in.meta(hdr)
	if err != nil {
		return nil, err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		n.Mode |= tree.TypeReg
		return n, in.content(ctx, n, hdr, r)
	case tar.TypeDir:
		n.Mode |= tree.TypeDir
		n.Nlink = 2
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) > MaxSymlinkLen || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return nil, fmt.Errorf("symlink target of %d bytes: must be 1..%d bytes without NUL", len(hdr.Linkname), MaxSymlinkLen)
		}
		n.Mode |= tree.TypeSymlink
		n.Target = hdr.Linkname
		n.Size = uint64(len(hdr.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		n.Mode |= map[byte]uint32{tar.TypeChar: tree.TypeChar, tar.TypeBlock: tree.TypeBlock}[hdr.Typeflag]
		if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor > 0xfffff {
			return nil, fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		n.Rdev = uint32(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if n.IsWhiteout() {
			// A 0/0 character device is what overlayfs takes for a
			// whiteout (so it acts as one under the overlay driver too):
			// store it as the whiteout it is, in its one canonical form.
			return &tree.Node{Mode: tree.TypeChar, Nlink: 1, Mtime: n.Mtime}, nil
		}
	case tar.TypeFifo:
		n.Mode |= tree.TypeFifo
	default:
		return nil, fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
	return n, nil
}

func (in *ingester) content(ctx context.Context, n *tree.Node, hdr *tar.Header, r io.Reader) error {
	size := hdr.Size
	if size > in.opts.MaxFileSize {
		return fmt.Errorf("file of %d bytes is larger than the limit of %d", size, in.opts.MaxFileSize)
	}
	n.Size = uint64(size)
	in.stats.RegularFiles++
	in.stats.Bytes += size
	switch {
	case size == 0:
		return nil
	case size <= in.opts.InlineLimit:
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("read %d bytes: %w", size, err)
		}
		n.Content = buf
		in.stats.InlineBytes += size
		return nil
	}
	in.stats.ExternalFiles++
	if in.pool != nil && size <= in.opts.BufferLimit {
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("read %d bytes: %w", size, err)
		}
		return in.pool.put(n, hdr.Name, buf)
	}
	obj, err := in.contents.Put(ctx, r, size)
	if err != nil {
		return fmt.Errorf("store content (%d bytes): %w", size, err)
	}
	n.Payload = obj.Payload
	d := obj.Digest
	n.Digest = &d
	return nil
}

// setXattrs copies the PAX xattr records (SCHILY.xattr.NAME) onto n. The
// overlay's own trusted.overlay.* namespace is refused: the driver uses it
// for whiteouts and opaque directories.
func setXattrs(n *tree.Node, hdr *tar.Header) error {
	const prefix = "SCHILY.xattr."
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if name == "" || strings.IndexByte(name, 0) >= 0 {
			return fmt.Errorf("invalid xattr name %q", name)
		}
		if strings.HasPrefix(name, "trusted.overlay.") {
			return fmt.Errorf("xattr %q is reserved for the overlay filesystem", name)
		}
		n.SetXattr(name, bytes.Clone([]byte(v)))
	}
	n.SortXattrs()
	return nil
}

// CleanPath turns a tar entry name into a tree path relative to the layer
// root ("" for the root itself). Absolute names are taken as relative to
// the root, as container engines do; a name that climbs above the root
// with ".." is refused.
func CleanPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains NUL")
	}
	if len(name) > MaxPathLen {
		return "", fmt.Errorf("name of %d bytes is longer than %d", len(name), MaxPathLen)
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errors.New("name climbs above the layer root")
	}
	p = strings.TrimLeft(p, "/")
	if p == "." {
		p = ""
	}
	for _, c := range tree.SplitPath(p) {
		if err := tree.CheckName(c); err != nil {
			return "", err
		}
	}
	return p, nil
}

func timeOf(hdr *tar.Header) tree.Time {
	return tree.Time{Sec: hdr.ModTime.Unix(), Nsec: uint32(hdr.ModTime.Nanosecond())}
}
