package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
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
	return layers.Object{Payload: payloadPath(obj.Digest), Digest: obj.Digest}, nil
}

// hashContents names contents without storing them: for reports such as
// Changes that only compare trees.
type hashContents struct{}

// Put implements layers.Contents.
func (hashContents) Put(ctx context.Context, r io.Reader, size int64) (layers.Object, error) {
	sum, n, err := fsverity.Digest(io.LimitReader(r, size))
	if err != nil {
		return layers.Object{}, err
	}
	if n != size {
		return layers.Object{}, fmt.Errorf("cfs: content is %d bytes, the entry says %d", n, size)
	}
	return layers.Object{Payload: payloadPath(sum), Digest: sum}, nil
}

// payloadPath is an object's path relative to the objects directory, as
// composefs images redirect to it.
func payloadPath(d dedup.Digest) string {
	s := d.String()
	return s[:2] + "/" + s[2:]
}

// imageOptions fixes the composefs format at version 0 for every image:
// flattened images hold no whiteouts, and version 1 would only add
// "opaque=x" markers to the directories of a diff image's whiteouts.
var imageOptions = erofs.Options{MinVersion: 0, MaxVersion: 0}

// writeImage writes t as a composefs image at path, atomically, and
// records the image's fs-verity digest beside it (path + ".digest", put
// in place before the image so that every image has its digest).
func writeImage(path string, t *tree.Tree) error {
	return writeImageVerity(path, t, false)
}

// writeImageVerity is writeImage that, with verity, also enables
// fs-verity on the image before it is renamed into place, so that the
// kernel can measure it at mount (see openImage).
func writeImageVerity(path string, t *tree.Tree, verity bool) error {
	var digest [fsverity.Size]byte
	var tmp string
	err := writeAtomicThen(path, func(w io.Writer) error {
		if f, ok := w.(*os.File); ok {
			tmp = f.Name()
		}
		h := fsverity.New()
		if err := erofs.Write(io.MultiWriter(w, h), t, imageOptions); err != nil {
			return err
		}
		digest = h.Sum32()
		return nil
	}, func() error {
		if verity {
			if tmp == "" {
				return errors.New("fs-verity: no temporary file to enable it on")
			}
			if err := enableFileVerity(tmp); err != nil {
				return err
			}
		}
		return writeFileAtomic(path+digestSuffix, []byte(fsverity.Hex(digest)+"\n"))
	})
	return err
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

// readImage reads the composefs tree of the image at path, checked
// against its recorded digest (once per file in this open store).
func (d *core) readImage(path string) (*tree.Tree, error) {
	// Read whole: the reader's many small reads (an inode, an xattr
	// block) cost a syscall each from a file.
	data, err := d.checks.read(path)
	if err != nil {
		return nil, err
	}
	return parseImage(path, data)
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

// diffTree is a layer's own tree: its diff image once sealed, else what
// its upper directory holds over its parent chain.
func (d *core) diffTree(ctx context.Context, id string, contents layers.Contents) (*tree.Tree, layerMeta, error) {
	m, err := d.readMeta(id)
	if err != nil {
		return nil, m, err
	}
	if m.Sealed {
		t, err := d.readDiffImage(id)
		return t, m, err
	}
	var lower *tree.Tree
	if m.Parent != "" {
		if lower, err = d.flatTree(ctx, m.Parent); err != nil {
			return nil, m, err
		}
	}
	t, err := layers.FromUpper(ctx, d.upperDir(id), lower, contents, d.ingestOptions(nil))
	if err != nil {
		return nil, m, fmt.Errorf("cfs: layer %s: %w", id, err)
	}
	return t, m, nil
}

// fullTree is everything a layer shows when mounted: its chain merged.
func (d *core) fullTree(ctx context.Context, id string) (*tree.Tree, error) {
	if id == "" {
		return tree.New(), nil
	}
	m, err := d.readMeta(id)
	if err != nil {
		return nil, err
	}
	if m.Sealed {
		return d.flatTree(ctx, id)
	}
	diff, _, err := d.diffTree(ctx, id, hashContents{})
	if err != nil {
		return nil, err
	}
	return d.stack(ctx, m.Parent, diff)
}

// stack merges diff onto the full tree of parent.
func (d *core) stack(ctx context.Context, parent string, diff *tree.Tree) (*tree.Tree, error) {
	base := tree.New()
	if parent != "" {
		var err error
		if base, err = d.flatTree(ctx, parent); err != nil {
			return nil, err
		}
	}
	if err := layers.Merge(base, diff); err != nil {
		return nil, err
	}
	layers.FixLinks(base)
	return base, nil
}

// flatTree returns the merged tree of the sealed layer id and its chain,
// writing nothing: the layer's cached flattened image, else the nearest
// ancestor's with the diff images of the layers above it merged on
// (from the empty tree where no ancestor has one). Sealing a layer on
// the way is the one write (layers below a child are sealed already).
func (d *core) flatTree(ctx context.Context, id string) (*tree.Tree, error) {
	var above []string // layers with no cached image, top first
	base := tree.New()
	for cur := id; cur != ""; {
		if t, err := d.readImage(d.flatImage(cur)); err == nil {
			base = t
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, flatImageError(cur, err)
		}
		if len(above) > maxChainDepth {
			return nil, fmt.Errorf("cfs: layer %s: chain deeper than %d layers (damaged parent links?)", id, maxChainDepth)
		}
		m, err := d.readMeta(cur)
		if err != nil {
			return nil, err
		}
		if !m.Sealed {
			if err := d.seal(ctx, cur); err != nil {
				return nil, err
			}
		}
		above, cur = append(above, cur), m.Parent
	}
	for i := len(above) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		diff, err := d.readDiffImage(above[i])
		if err != nil {
			return nil, err
		}
		if err := layers.Merge(base, diff); err != nil {
			return nil, fmt.Errorf("cfs: flatten %s: %w", above[i], err)
		}
	}
	if len(above) > 0 {
		layers.FixLinks(base)
	}
	return base, nil
}

// maxChainDepth bounds a layer chain (c/storage's overlay allows 500
// layers; far more than any image has).
const maxChainDepth = 4096

// ensureFlat writes the flattened image of the sealed layer id unless it
// is cached: the one image a mount of id needs, none for the layers
// below. Images are written to a temporary name and renamed, and the
// writer is deterministic, so concurrent builders agree.
//
// A cached image is checked against its recorded digest before its first
// mount in this open store, and refused if damaged (see checkFlatImage
// for stores with fs-verity).
func (d *core) ensureFlat(ctx context.Context, id string) error {
	if err := d.checkFlatImage(d.flatImage(id)); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return flatImageError(id, err)
	}
	flat, err := d.flatTree(ctx, id)
	if err != nil {
		return err
	}
	err = writeImageVerity(d.flatImage(id), flat, d.imageVerity())
	if err != nil && d.opts.Verity == "auto" && errors.Is(err, fsverity.ErrNotSupported) {
		err = writeImage(d.flatImage(id), flat)
	}
	if err != nil {
		return fmt.Errorf("cfs: flatten %s: %w", id, err)
	}
	d.checks.trust(d.flatImage(id))
	return nil
}

// readDiffImage reads the sealed layer id's own image, checked.
func (d *core) readDiffImage(id string) (*tree.Tree, error) {
	t, err := d.readImage(d.diffImage(id))
	if errors.Is(err, ErrImageDamaged) {
		return nil, fmt.Errorf("cfs: layer %s: %w; remove the layer (its image) and pull it again", id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cfs: layer %s: %w", id, err)
	}
	return t, nil
}

// flatImageError names the layer whose flattened image failed.
func flatImageError(id string, err error) error {
	if errors.Is(err, ErrImageDamaged) {
		return fmt.Errorf("cfs: layer %s: flattened %w; it is a cache: `cfs-storage fsck --repair` removes it and the next mount rebuilds it", id, err)
	}
	return fmt.Errorf("cfs: layer %s: flattened image: %w", id, err)
}
