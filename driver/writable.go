package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

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
	root, err := imageRoot(d.layers.diffImage(id))
	if err != nil {
		return m, fmt.Errorf("writable mount: %w", err)
	}
	if err := d.layers.resetUpper(id, rootAttrs{mode: root.Mode, uid: root.UID, gid: root.GID}); err != nil {
		return m, fmt.Errorf("writable mount: %w", err)
	}
	m.Upper = true
	if err := d.layers.writeMeta(id, m); err != nil {
		return m, fmt.Errorf("writable mount: %w", err)
	}
	return m, nil
}

// foldUpper folds the changes a writable mount made to the sealed layer
// id into its diff image. It does nothing for a layer without such
// changes or one still mounted (by this process or another).
func (d *core) foldUpper(ctx context.Context, id string) error {
	m, err := d.layers.readMeta(id)
	if err != nil || !m.Sealed || !m.Upper || d.layers.readOnly(id) {
		return nil // a layer removed meanwhile, nothing to fold, or not ours
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
		if err := d.layers.writeMeta(id, m); err != nil {
			return err
		}
		d.layers.dropUpper(id)
		return nil
	}
	lower, err := d.flatTree(ctx, id)
	if err != nil {
		return fmt.Errorf("cfs: fold changes into %s: %w", id, err)
	}
	own, err := d.images.readDiff(id)
	if err != nil {
		return fmt.Errorf("cfs: fold changes into %s: %w", id, err)
	}
	_, err = d.commitLayer(ctx, id, m, func(contents layers.Contents) (*tree.Tree, error) {
		changes, err := layers.FromUpper(ctx, d.layers.upperDir(id), lower, contents, d.contents.ingestOptions(nil))
		if err != nil {
			return nil, err
		}
		if err := layers.Compose(own, changes); err != nil {
			return nil, err
		}
		layers.FixLinks(own)
		// The flattened images above go before the new diff image is in
		// place: a crash in between leaves them to be rebuilt.
		return own, d.images.dropChainsWith(id)
	})
	if err != nil {
		return fmt.Errorf("cfs: fold changes into %s: %w", id, err)
	}
	d.contents.markRemoved() // objects the changes replaced may be unused now
	return nil
}

// upperChanged reports whether the upper directory of id holds anything
// or its root differs from the layer's root.
func (d *core) upperChanged(id string) (bool, error) {
	names, err := readDirNames(d.layers.upperDir(id))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil || len(names) > 0 {
		return true, err
	}
	root, err := imageRoot(d.layers.diffImage(id))
	if err != nil {
		return false, err
	}
	n := &tree.Node{}
	if err := rootFromDir(n, d.layers.upperDir(id)); err != nil {
		return false, err
	}
	return n.Mode != root.Mode || n.UID != root.UID || n.GID != root.GID, nil
}
