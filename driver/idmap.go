package driver

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.podman.io/storage/pkg/idtools"

	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// ID-mapped layers (containers in a user namespace: podman's
// --userns=auto, --uidmap, storage.conf's remap-uids) are remapped
// copies: c/storage creates a layer whose maps differ from its parent's
// and calls UpdateLayerIDMap to rewrite the owners. Overlay chowns
// through a mount and then rotates its diff directories, so that the
// chown becomes part of the layer's lower layers, not of its own diff.
// cfs does the same without a mount: the tree of the parent chain,
// owners remapped, is written as the layer's base image
// (layers/<id>/base.cfs, layerMeta.Base), which the layer's own diff
// applies to in place of the chain, and which a writable layer mounts as
// its lower layer; a sealed layer's own diff is remapped too. The
// layer's upper directory stays empty, so later ApplyDiff, Changes, Diff
// and DiffSize see only the layer's own changes (Changes, Diff read the
// owners back through the layers' maps, diff.go). The base image costs
// metadata only (contents stay in the object store, shared); the layer's
// refs hold the base's objects too.

// idMapper maps container IDs to host IDs with m (nil for no mapping).
func idMapper(m *idtools.IDMappings) layers.IDMapper {
	if m == nil || m.Empty() {
		return nil
	}
	return func(uid, gid uint32) (uint32, uint32, error) {
		p, err := m.ToHost(idtools.IDPair{UID: int(uid), GID: int(gid)})
		if err != nil {
			return 0, 0, err
		}
		return uint32(p.UID), uint32(p.GID), nil
	}
}

// containerIDs maps host IDs back to the container IDs of m (nil or
// empty: the same IDs); an ID m does not map is kept as it is (an
// unmapped 0:0 that UpdateLayerIDMap left, a file host root chowned).
func containerIDs(m *idtools.IDMappings) layers.IDMapper {
	if m == nil || m.Empty() {
		return nil
	}
	return func(uid, gid uint32) (uint32, uint32, error) {
		if u, err := idtools.RawToContainer(int(uid), m.UIDs()); err == nil {
			uid = uint32(u)
		}
		if g, err := idtools.RawToContainer(int(gid), m.GIDs()); err == nil {
			gid = uint32(g)
		}
		return uid, gid, nil
	}
}

// remapper maps a host owner through toContainer back to the container
// IDs, then through toHost to the new host IDs, as c/storage's
// ChownPathByMaps: a 0:0 that toContainer does not map stays 0:0 (a
// parent layer that should have had mapped IDs), and a container ID
// toHost does not map becomes the overflow ID.
func remapper(toContainer, toHost *idtools.IDMappings) layers.IDMapper {
	return func(uid, gid uint32) (uint32, uint32, error) {
		u, g := int(uid), int(gid)
		if toContainer != nil && !toContainer.Empty() {
			cu, cg, err := toContainer.ToContainer(idtools.IDPair{UID: u, GID: g})
			if err != nil && (u != 0 || g != 0) {
				return 0, 0, fmt.Errorf("host IDs %d:%d: %w", u, g, err)
			}
			if err == nil {
				u, g = cu, cg
			}
		}
		if toHost != nil && !toHost.Empty() {
			p, err := toHost.ToHostOverflow(idtools.IDPair{UID: u, GID: g})
			if err != nil {
				return 0, 0, fmt.Errorf("container IDs %d:%d: %w", u, g, err)
			}
			u, g = p.UID, p.GID
		}
		return uint32(u), uint32(g), nil
	}
}

// mapTree rewrites the owners of every node of t with mapIDs (nil: none),
// each node once however many links it has.
func mapTree(t *tree.Tree, mapIDs layers.IDMapper) error {
	if mapIDs == nil || t == nil {
		return nil
	}
	seen := map[*tree.Node]bool{}
	return t.Walk(func(p string, e tree.Dirent) error {
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
}

// updateIDMap remaps the owners of everything layer id shows with mapIDs
// (for other ID mappings than its parent's), its root becoming owned by
// rootUID:rootGID (the new mappings' root, as overlay makes its new diff
// directory): the remapped tree of its parent chain (or of its base
// already) becomes its base image, and its own diff is remapped in
// place. chownUpper remaps the upper directory of a writable layer that
// has content already (c/storage calls UpdateLayerIDMap on new, empty
// layers).
func (d *core) updateIDMap(ctx context.Context, id string, mapIDs layers.IDMapper, rootUID, rootGID uint32, chownUpper func(dir string) error) error {
	if err := d.remap(ctx, id, mapIDs, rootUID, rootGID, chownUpper); err != nil {
		return fmt.Errorf("cfs: remap owners of %s: %w", id, err)
	}
	return nil
}

func (d *core) remap(ctx context.Context, id string, mapIDs layers.IDMapper, rootUID, rootGID uint32, chownUpper func(dir string) error) error {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return err
	}
	if d.mounted(id) {
		return errors.New("the layer is mounted")
	}
	base, err := d.baseTree(ctx, id, m)
	if err != nil {
		return err
	}
	if base != nil {
		if err := mapTree(base, mapIDs); err != nil {
			return err
		}
		base.Root.UID, base.Root.GID = rootUID, rootGID
	}
	// The flattened images of the layer (and of any above it) no
	// longer show what it holds: they go first.
	if err := d.images.dropChainsWith(id); err != nil {
		return err
	}
	if !m.Sealed {
		return d.remapWritable(ctx, id, m, base, rootUID, rootGID, chownUpper)
	}
	diff, err := d.images.readDiff(id)
	if err != nil {
		return err
	}
	if err := mapTree(diff, mapIDs); err != nil {
		return err
	}
	diff.Root.UID, diff.Root.GID = rootUID, rootGID
	if base != nil {
		if err := d.images.writeBase(d.layers.baseImage(id), base); err != nil {
			return err
		}
		m.Base = true
	}
	_, err = d.commitLayer(ctx, id, m, func(layers.Contents) (*tree.Tree, error) { return diff, nil })
	return err
}

// remapWritable remaps the writable layer id: its base image written
// (and its objects registered as the layer's refs), its upper directory
// remapped if it has content, and its root owned by rootUID:rootGID.
func (d *core) remapWritable(ctx context.Context, id string, m layerMeta, base *tree.Tree, rootUID, rootGID uint32, chownUpper func(dir string) error) error {
	upper := d.layers.upperDir(id)
	names, err := readDirNames(upper)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		if err := chownUpper(upper); err != nil {
			return err
		}
	}
	if err := os.Lchown(upper, int(rootUID), int(rootGID)); err != nil {
		return err
	}
	if base == nil {
		return nil // no parent: nothing below the upper directory
	}
	_, err = d.contents.commit(ctx, id, func(layers.Contents) (*tree.Tree, error) { return base, nil }, func(t *tree.Tree) error {
		return d.images.writeBase(d.layers.baseImage(id), t)
	})
	if err != nil {
		return err
	}
	m.Base = true
	return d.layers.writeMeta(id, m)
}
