package driver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/erofs"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// ingestContents puts layer contents into the object store, pinned by
// an ingest session until the layer's refs are committed.
type ingestContents struct {
	in   *dedup.Ingest
	opts dedup.InsertOptions
}

// Put implements layers.Contents.
func (s ingestContents) Put(ctx context.Context, r io.Reader, size int64) (layers.Object, error) {
	obj, err := s.in.Insert(ctx, io.LimitReader(r, size), s.opts)
	if err != nil {
		return layers.Object{}, err
	}
	if obj.Size != size {
		return layers.Object{}, fmt.Errorf("cfs: content is %d bytes, the entry says %d", obj.Size, size)
	}
	return layers.Object{Payload: dedup.ObjectPath(obj.Digest), Digest: obj.Digest}, nil
}

// imageOptions fixes the composefs format at version 0 for every image:
// flattened images hold no whiteouts, and version 1 would only add
// "opaque=x" markers to the directories of a diff image's whiteouts.
var imageOptions = erofs.Options{MinVersion: 0, MaxVersion: 0}

// writeImage writes t as a composefs image at path, atomically and
// durably, and records the image's fs-verity digest beside it (path +
// ".digest", put in place before the image so that every image has its
// digest).
func writeImage(path string, t *tree.Tree) error {
	return writeImageWith(path, t, imageWrite{durable: true})
}

// imageWrite says how writeImageWith writes an image.
type imageWrite struct {
	// verity enables fs-verity on the image before it is renamed into
	// place, so that the kernel can measure it at mount.
	verity bool
	// durable syncs the image and its digest before the renames; a cache
	// that is checked before use and rebuilt when damaged need not be.
	durable bool
}

// writeImageWith writes t as a composefs image at path, atomically, with
// its digest recorded beside it, as w says.
func writeImageWith(path string, t *tree.Tree, w imageWrite) error {
	var digest [fsverity.Size]byte
	flush := atomicfile.FlushFile
	if !w.durable {
		flush = atomicfile.FlushNone
	}
	err := atomicfile.Write(path, atomicfile.Options{Flush: flush, BeforeRename: func(tmp string) error {
		if w.verity {
			if err := enableFileVerity(tmp); err != nil {
				return err
			}
		}
		return atomicfile.WriteFile(path+digestSuffix, []byte(fsverity.Hex(digest)+"\n"), atomicfile.Options{Flush: flush})
	}}, func(f io.Writer) error {
		h := fsverity.New()
		if err := erofs.Write(io.MultiWriter(f, h), t, imageOptions); err != nil {
			return err
		}
		digest = h.Sum32()
		return nil
	})
	if err != nil {
		return fmt.Errorf("cfs: %w", err)
	}
	return nil
}

// digestSuffix names the file holding an image's fs-verity digest.
const digestSuffix = ".digest"

// imageRoot reads only the root directory's inode of the image at path.
func imageRoot(path string) (erofs.InodeInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return erofs.InodeInfo{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return erofs.InodeInfo{}, err
	}
	img, err := erofs.Open(f, st.Size())
	if err != nil {
		return erofs.InodeInfo{}, fmt.Errorf("image %s: %w", path, err)
	}
	fi, err := img.Lstat(".")
	if err != nil {
		return erofs.InodeInfo{}, fmt.Errorf("image %s: root: %w", path, err)
	}
	info, ok := fi.Sys().(*erofs.InodeInfo)
	if !ok || info == nil {
		return erofs.InodeInfo{}, fmt.Errorf("image %s: root has no inode information", path)
	}
	return *info, nil
}

// parseImage reads the composefs tree of an image's bytes.
func parseImage(path string, data []byte) (*tree.Tree, error) {
	img, err := erofs.Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	t, err := img.Tree()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	return t, nil
}
