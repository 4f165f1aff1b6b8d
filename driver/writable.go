package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// A sealed layer mounted without "ro" is writable, as c/storage's
// contract has it (its `check` and `copy` write into layers this way):
// the mount gets an overlay upper directory over the layer's flattened
// image, and the last Put folds the changes into the layer's diff image
// (layers.Compose), rewrites the layer's object refs, and drops the
// flattened images of the layer and of every layer above it, which no
// longer show what the layer holds. Meanwhile layerMeta.Upper records
// that the upper directory holds changes, so that a crash before the
// fold loses nothing: the next open folds them.

// openUpper gives the sealed layer id an empty upper and work directory
// (the upper's root with the layer root's owner and mode, which overlay
// shows) and records it in the layer's metadata before anything is
// written there.
func (d *core) openUpper(id string, m layerMeta) (layerMeta, error) {
	root, err := imageRoot(d.diffImage(id))
	if err != nil {
		return m, fmt.Errorf("writable mount: %w", err)
	}
	for _, dir := range []string{d.upperDir(id), d.workDir(id)} {
		if err := os.RemoveAll(dir); err != nil {
			return m, fmt.Errorf("writable mount: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return m, fmt.Errorf("writable mount: %w", err)
		}
	}
	upper := d.upperDir(id)
	if err := os.Chmod(upper, os.FileMode(root.Mode&0o777)|modeBits(root.Mode)); err != nil {
		return m, fmt.Errorf("writable mount: %w", err)
	}
	if err := os.Lchown(upper, int(root.UID), int(root.GID)); err != nil {
		return m, fmt.Errorf("writable mount: %w", err)
	}
	m.Upper = true
	if err := d.writeMeta(d.layerDir(id), m); err != nil {
		return m, fmt.Errorf("writable mount: %w", err)
	}
	return m, nil
}

// foldUpper folds the changes a writable mount made to the sealed layer
// id into its diff image. It does nothing for a layer without such
// changes or one still mounted (by this process or another).
func (d *core) foldUpper(ctx context.Context, id string) error {
	m, err := d.readMeta(id)
	if err != nil || !m.Sealed || !m.Upper {
		return nil // a layer removed meanwhile, or nothing to fold
	}
	d.mu.Lock()
	_, mounted := d.mounts[id]
	d.mu.Unlock()
	if mounted || d.mountedElsewhere(id) {
		return nil
	}
	m.Upper = false
	changed, err := d.upperChanged(id)
	if err != nil {
		return fmt.Errorf("cfs: fold changes into %s: %w", id, err)
	}
	if !changed {
		if err := d.writeMeta(d.layerDir(id), m); err != nil {
			return err
		}
		os.RemoveAll(d.upperDir(id))
		os.RemoveAll(d.workDir(id))
		return nil
	}
	lower, err := d.flatTree(ctx, id)
	if err != nil {
		return fmt.Errorf("cfs: fold changes into %s: %w", id, err)
	}
	own, err := d.readDiffImage(id)
	if err != nil {
		return fmt.Errorf("cfs: fold changes into %s: %w", id, err)
	}
	_, err = d.commitLayer(ctx, id, m, func(contents layers.Contents) (*tree.Tree, error) {
		changes, err := layers.FromUpper(ctx, d.upperDir(id), lower, contents, d.ingestOptions(nil))
		if err != nil {
			return nil, err
		}
		if err := layers.Compose(own, changes); err != nil {
			return nil, err
		}
		layers.FixLinks(own)
		// The flattened images above go before the new diff image is in
		// place: a crash in between leaves them to be rebuilt.
		return own, d.dropFlatImages(id)
	})
	if err != nil {
		return fmt.Errorf("cfs: fold changes into %s: %w", id, err)
	}
	d.mu.Lock()
	d.removed = true // objects the changes replaced may be unused now
	d.mu.Unlock()
	return nil
}

// upperChanged reports whether the upper directory of id holds anything
// or its root differs from the layer's root.
func (d *core) upperChanged(id string) (bool, error) {
	names, err := readDirNames(d.upperDir(id))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil || len(names) > 0 {
		return true, err
	}
	root, err := imageRoot(d.diffImage(id))
	if err != nil {
		return false, err
	}
	n := &tree.Node{}
	if err := rootFromDir(n, d.upperDir(id)); err != nil {
		return false, err
	}
	return n.Mode != root.Mode || n.UID != root.UID || n.GID != root.GID, nil
}

// dropFlatImages removes the cached flattened images of id and of every
// layer whose chain holds id.
func (d *core) dropFlatImages(id string) error {
	ids, err := d.listLayers()
	if err != nil {
		return err
	}
	parent := map[string]string{}
	for _, l := range ids {
		if m, err := d.readMeta(l); err == nil {
			parent[l] = m.Parent
		}
	}
	for _, l := range ids {
		// At most one step per layer: damaged metadata cannot loop.
		for p, steps := l, 0; p != "" && steps <= len(ids); p, steps = parent[p], steps+1 {
			if p != id {
				continue
			}
			for _, f := range []string{d.flatImage(l), d.flatImage(l) + digestSuffix} {
				if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("drop flattened image of %s: %w", l, err)
				}
			}
			break
		}
	}
	if err := syncDir(filepath.Join(d.home, "images")); err != nil {
		return fmt.Errorf("drop flattened images: %w", err)
	}
	return nil
}
