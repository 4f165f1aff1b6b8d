package driver

import (
	"context"
	"fmt"

	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// updateIDMap changes the owners of everything layer id shows with
// mapIDs (for a container in a user namespace). A sealed layer's image
// is rewritten (remapSealed); a writable layer is mounted and chown runs
// on its root (a metadata-only copy-up per file).
func (d *core) updateIDMap(ctx context.Context, id string, mapIDs layers.IDMapper, mountLabel string, chown func(dir string) error) error {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return err
	}
	if m.Sealed {
		return d.remapSealed(ctx, id, mapIDs)
	}
	mnt, err := d.get(ctx, id, mountOptions{MountLabel: mountLabel})
	if err != nil {
		return err
	}
	err = chown(mnt)
	if perr := d.put(id); err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("cfs: remap owners of %s: %w", id, err)
	}
	return nil
}

// remapSealed rewrites the owners of everything a sealed layer shows
// (its whole chain) with mapIDs. The layer's new diff is its full tree
// over an opaque root, so that the parents' files carry the new owners
// too; it then references every object of its chain.
func (d *core) remapSealed(ctx context.Context, id string, mapIDs layers.IDMapper) error {
	full, err := d.flatTree(ctx, id)
	if err != nil {
		return err
	}
	seen := map[*tree.Node]bool{}
	err = full.Walk(func(p string, e tree.Dirent) error {
		if seen[e.Node] {
			return nil
		}
		seen[e.Node] = true
		uid, gid, err := mapIDs(e.Node.UID, e.Node.GID)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		e.Node.UID, e.Node.GID = uid, gid
		return nil
	})
	if err != nil {
		return fmt.Errorf("cfs: remap owners of %s: %w", id, err)
	}
	full.Root.SetXattr(layers.OpaqueXattr, []byte("y"))
	m, err := d.layers.readMeta(id)
	if err != nil {
		return err
	}
	if _, err := d.commitLayer(ctx, id, m, func(layers.Contents) (*tree.Tree, error) { return full, nil }); err != nil {
		return fmt.Errorf("cfs: remap owners of %s: %w", id, err)
	}
	if _, err := d.images.drop(id); err != nil {
		return fmt.Errorf("cfs: remap owners of %s: drop cached image: %w", id, err)
	}
	return nil
}
