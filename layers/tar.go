package layers

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Opener opens the content of an external regular file of a tree.
type Opener func(n *tree.Node) (io.ReadCloser, error)

// WriteTar writes t as a layer tar: entries depth-first in name order
// (the root itself is not written), whiteouts as OCI ".wh." entries, an
// opaque directory followed by its ".wh..wh..opq" entry, the second and
// later entries of a node as hard links to the first, xattrs as PAX
// SCHILY.xattr records. External contents are read through open.
func WriteTar(ctx context.Context, w io.Writer, t *tree.Tree, open Opener) error {
	tw := tar.NewWriter(w)
	tw2 := tarWriter{tw: tw, open: open, seen: map[*tree.Node]string{}}
	if err := tw2.dir(ctx, t.Root, ""); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("layers: finish tar: %w", err)
	}
	return nil
}

type tarWriter struct {
	tw   *tar.Writer
	open Opener
	seen map[*tree.Node]string
}

func (w *tarWriter) dir(ctx context.Context, dir *tree.Node, at string) error {
	if isOpaque(dir) { // the root too: a layer may hide everything below it
		// As c/storage's overlay driver writes it: the directory's
		// permissions and owner, no time.
		hdr := &tar.Header{Name: at + WhiteoutOpaque, Typeflag: tar.TypeReg, Mode: int64(dir.Mode & 0o777), Uid: int(dir.UID), Gid: int(dir.GID)}
		if err := w.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layers: write %s: %w", at+WhiteoutOpaque, err)
		}
	}
	for _, e := range dir.Entries() {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := at + e.Name
		if !impliedDir(e.Node) {
			if err := w.entry(p, e.Node); err != nil {
				return err
			}
		}
		if e.Node.IsDir() {
			if err := w.dir(ctx, e.Node, p+"/"); err != nil {
				return err
			}
		}
	}
	return nil
}

// impliedDir reports whether n is a directory the layer has no entry of
// its own for (tree.ImpliedXattr) that the entries written below it
// imply: the tar leaves it out, as the tar the layer came from did, so
// that extraction makes it as it made it then (and overlay shows the
// lower directory's metadata, not the mark's mtime 0).
func impliedDir(n *tree.Node) bool {
	return n.IsImplied() && (n.NumEntries() > 0 || isOpaque(n))
}

func (w *tarWriter) entry(p string, n *tree.Node) error {
	if n.Type() == tree.TypeSocket {
		return nil // tar has no sockets; container engines skip them too
	}
	if n.IsWhiteout() {
		dir, base := path.Split(p)
		// As c/storage's overlay driver writes it: mode 0, the whiteout
		// device's owner and time.
		hdr := &tar.Header{Name: dir + WhiteoutPrefix + base, Typeflag: tar.TypeReg, Mode: 0, Uid: int(n.UID), Gid: int(n.GID), ModTime: mtime(n)}
		if err := w.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layers: write whiteout %s: %w", p, err)
		}
		return nil
	}
	if first, ok := w.seen[n]; ok && !n.IsDir() {
		// A link header carries the inode's metadata, as tar writers
		// record it (extraction applies it to the shared inode).
		hdr, err := header(p, n)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		if err := w.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layers: write hard link %s: %w", p, err)
		}
		return nil
	}
	w.seen[n] = p
	hdr, err := header(p, n)
	if err != nil {
		return err
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layers: write %s: %w", p, err)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		return w.content(p, n)
	}
	return nil
}

func (w *tarWriter) content(p string, n *tree.Node) error {
	if !n.IsExternal() {
		if _, err := w.tw.Write(n.Content); err != nil {
			return fmt.Errorf("layers: write %s: %w", p, err)
		}
		return nil
	}
	rc, err := w.open(n)
	if err != nil {
		return fmt.Errorf("layers: open content of %s: %w", p, err)
	}
	defer rc.Close()
	written, err := io.Copy(w.tw, rc)
	if err != nil {
		return fmt.Errorf("layers: copy content of %s (%d of %d bytes): %w", p, written, n.Size, err)
	}
	return nil
}

// header builds the tar header of a node other than a whiteout or a
// repeated hard link.
func header(p string, n *tree.Node) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:    p,
		Mode:    int64(n.Mode & 0o7777),
		Uid:     int(n.UID),
		Gid:     int(n.GID),
		ModTime: mtime(n),
	}
	for _, x := range n.Xattrs {
		if x.Name == OpaqueXattr || x.Name == tree.ImpliedXattr {
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+x.Name] = string(x.Value)
	}
	switch n.Type() {
	case tree.TypeReg:
		hdr.Typeflag, hdr.Size = tar.TypeReg, int64(n.Size)
	case tree.TypeDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
	case tree.TypeSymlink:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, n.Target
	case tree.TypeChar, tree.TypeBlock:
		hdr.Typeflag = tar.TypeChar
		if n.Type() == tree.TypeBlock {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(uint64(n.Rdev))), int64(unix.Minor(uint64(n.Rdev)))
	case tree.TypeFifo:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("layers: %s: file type %#o cannot be stored in a tar", p, n.Type())
	}
	return hdr, nil
}

// mtime is a node's mtime as a tar header carries it: truncated to the
// second, as containers/storage's archive writes it (archive/tar would
// round it, possibly up).
func mtime(n *tree.Node) time.Time {
	return time.Unix(n.Mtime.Sec, 0)
}
