package driver

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

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
	m, err := d.readMeta(id)
	if err != nil {
		return err
	}
	if _, err := d.commitLayer(ctx, id, m, func(layers.Contents) (*tree.Tree, error) { return full, nil }); err != nil {
		return fmt.Errorf("cfs: remap owners of %s: %w", id, err)
	}
	if err := os.Remove(d.flatImage(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cfs: remap owners of %s: drop cached image: %w", id, err)
	}
	return nil
}
