package driver

import (
	"context"
	"fmt"
	"io"

	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/directory"
	"go.podman.io/storage/pkg/idtools"

	"github.com/cfs-storage/cfs-storage/dedup"
)

// Name is the name the driver registers under: driver = "cfs".
const Name = "cfs"

// adapter is the graphdriver.Driver face of core. F is the cleanup
// function type of DeferredRemove, which containers/storage declares in
// an internal package: Init infers it from the interface's method
// expression, so the adapter satisfies the interface without naming it.
type adapter[F ~func() error] struct {
	c *core
}

// newAdapter builds the adapter for the cleanup type F that the method
// expression's result names.
func newAdapter[F ~func() error](_ func(graphdriver.ProtoDriver, string) (F, error), c *core) *adapter[F] {
	return &adapter[F]{c: c}
}

// String returns the driver's name.
func (a *adapter[F]) String() string { return Name }

// CreateReadWrite creates a writable layer for a container.
func (a *adapter[F]) CreateReadWrite(id, parent string, opts *graphdriver.CreateOpts) error {
	return a.create(id, parent, opts, containerLayer)
}

// Create creates a layer; it stays writable until sealed.
func (a *adapter[F]) Create(id, parent string, opts *graphdriver.CreateOpts) error {
	return a.create(id, parent, opts, imageLayer)
}

// create makes a layer; one with no parent has its root owned by the
// root of the ID mappings it is created with, as with overlay.
func (a *adapter[F]) create(id, parent string, opts *graphdriver.CreateOpts, kind layerKind) error {
	if err := checkCreateOpts(opts); err != nil {
		return err
	}
	var m *idtools.IDMappings
	if opts != nil {
		m = opts.IDMappings
	}
	uid, gid, err := rootOf(m)
	if err != nil {
		return fmt.Errorf("cfs: create %s: %w", id, err)
	}
	c := a.c // container layers in the graph root, image layers where images go
	if kind == imageLayer {
		c = a.c.forImages()
	}
	return c.createOwned(context.Background(), id, parent, kind, uid, gid)
}

// rootOf is the host owner of the container's root in m (0:0 for none).
func rootOf(m *idtools.IDMappings) (uint32, uint32, error) {
	if m == nil {
		return 0, 0, nil
	}
	uid, gid, err := idtools.GetRootUIDGID(m.UIDs(), m.GIDs())
	if err != nil {
		return 0, 0, fmt.Errorf("root of the ID mappings: %w", err)
	}
	return uint32(uid), uint32(gid), nil
}

func checkCreateOpts(opts *graphdriver.CreateOpts) error {
	if opts == nil {
		return nil
	}
	for k := range opts.StorageOpt {
		return fmt.Errorf("cfs: per-layer storage option %q is not supported", k)
	}
	return nil
}

// CreateFromTemplate creates a layer with the same content as template.
func (a *adapter[F]) CreateFromTemplate(id, template string, _ *idtools.IDMappings, parent string, _ *idtools.IDMappings, opts *graphdriver.CreateOpts, _ bool) error {
	if err := checkCreateOpts(opts); err != nil {
		return err
	}
	return a.c.forImages().createFromTemplate(context.Background(), id, template, parent)
}

// Remove deletes a layer.
func (a *adapter[F]) Remove(id string) error {
	cleanup, err := a.c.owner(id).remove(id)
	if cerr := cleanup(); err == nil {
		err = cerr
	}
	return err
}

// DeferredRemove makes a layer unusable at once and returns the function
// that deletes its files.
func (a *adapter[F]) DeferredRemove(id string) (F, error) {
	cleanup, err := a.c.owner(id).remove(id)
	return F(cleanup), err
}

// GetTempDirRootDirs returns where DeferredRemove keeps removed layers.
func (a *adapter[F]) GetTempDirRootDirs() []string { return a.c.homes() }

// Get mounts a layer and returns its root.
//
// With UID and GID maps in options, where the driver supports shifting
// (SupportsShifting), the mount shows the layer's owners mapped through
// them (an idmapped mount, idmap.go) and the upper directory's root is
// owned by the mapped root. Otherwise the maps are those the layer's
// owners were already remapped to (UpdateLayerIDMap; c/storage refuses
// to mount a layer with other maps) and the mount shows the owners as
// they are, as overlay does when it cannot shift.
func (a *adapter[F]) Get(id string, options graphdriver.MountOpts) (string, error) {
	opts := mountOptions{MountLabel: options.MountLabel, Volatile: options.Volatile}
	for _, o := range options.Options {
		if o == "ro" {
			opts.ReadOnly = true
		} else {
			opts.Extra = append(opts.Extra, o)
		}
	}
	if a.c.supportsShifting() {
		opts.Shift = newIDMapping(options.UidMaps, options.GidMaps)
	}
	return a.c.owner(id).get(context.Background(), id, opts)
}

// Put releases a Get.
func (a *adapter[F]) Put(id string) error { return a.c.owner(id).put(id) }

// Exists reports whether the layer exists.
func (a *adapter[F]) Exists(id string) bool { return a.c.layers.exists(id) }

// ListLayers returns every layer's ID.
func (a *adapter[F]) ListLayers() ([]string, error) { return a.c.layers.list() }

// Status reports the driver's state (as `podman info` shows it).
func (a *adapter[F]) Status() [][2]string { return a.c.status(context.Background()) }

// Metadata returns where a layer's files are.
func (a *adapter[F]) Metadata(id string) (map[string]string, error) {
	return a.c.owner(id).metadata(id)
}

// ReadWriteDiskUsage returns the disk usage of a writable layer's upper
// directory (of a sealed layer: its image).
func (a *adapter[F]) ReadWriteDiskUsage(id string) (*directory.DiskUsage, error) {
	return a.c.owner(id).diskUsage(id)
}

// Cleanup unmounts what this process mounted and closes the store.
func (a *adapter[F]) Cleanup() error { return a.c.close() }

// AdditionalImageStores returns the read-only image stores (option
// imagestore): containers/storage opens their layer and image lists
// read-only, and the driver finds their layers.
func (a *adapter[F]) AdditionalImageStores() []string { return a.c.opts.ImageStores }

// Dedup does nothing: cfs stores every content once already.
func (a *adapter[F]) Dedup(graphdriver.DedupArgs) (graphdriver.DedupResult, error) {
	return graphdriver.DedupResult{}, nil
}

// SyncMode returns SyncModeNone: the object store syncs what it commits.
func (a *adapter[F]) SyncMode() graphdriver.SyncMode { return graphdriver.SyncModeNone }

// Diff returns a layer's changes as a tar, owners in container IDs (the
// layer's own ones read back through idMappings).
func (a *adapter[F]) Diff(id string, idMappings *idtools.IDMappings, parent string, _ *idtools.IDMappings, _ string) (io.ReadCloser, error) {
	return a.c.owner(id).diff(context.Background(), id, parent, containerIDs(idMappings))
}

// Changes lists what differs between parent and id, owners compared in
// container IDs (each layer's read back through its mappings).
func (a *adapter[F]) Changes(id string, idMappings *idtools.IDMappings, parent string, parentMappings *idtools.IDMappings, _ string) ([]archive.Change, error) {
	cs, err := a.c.owner(id).changes(context.Background(), id, parent, containerIDs(idMappings), containerIDs(parentMappings))
	if err != nil {
		return nil, err
	}
	out := make([]archive.Change, len(cs))
	for i, c := range cs {
		out[i] = archive.Change{Path: c.Path, Kind: archive.ChangeType(c.Kind)}
	}
	return out, nil
}

// ApplyDiff ingests a layer tar into a writable layer and seals it.
func (a *adapter[F]) ApplyDiff(id string, options graphdriver.ApplyDiffOpts) (int64, error) {
	if options.ForceMask != nil {
		return 0, fmt.Errorf("cfs: apply diff to %s: force_mask is not supported", id)
	}
	return a.c.owner(id).applyDiff(context.Background(), id, options.Diff, options.Mappings)
}

// DiffSize returns the size of a layer's own contents (owners do not
// count: a layer whose owners were only remapped has none).
func (a *adapter[F]) DiffSize(id string, _ *idtools.IDMappings, _ string, _ *idtools.IDMappings, _ string) (int64, error) {
	return a.c.owner(id).diffSize(context.Background(), id)
}

// DiffGetter serves a layer's file contents by path (for tar-split).
func (a *adapter[F]) DiffGetter(id string) (graphdriver.FileGetCloser, error) {
	return a.c.owner(id).fileGetter(context.Background(), id)
}

// UpdateLayerIDMap changes the owners of everything layer id shows from
// the host IDs of toContainer to those of toHost (for a layer whose
// mappings differ from its parent's, where the driver does not shift).
// The remap becomes the layer's base, not part of its own diff
// (idmap.go), as overlay's rotation of its diff directories has it.
func (a *adapter[F]) UpdateLayerIDMap(id string, toContainer, toHost *idtools.IDMappings, _ string) error {
	uid, gid, err := rootOf(toHost)
	if err != nil {
		return fmt.Errorf("cfs: remap owners of %s: %w", id, err)
	}
	return a.c.owner(id).updateIDMap(context.Background(), id, remapper(toContainer, toHost), uid, gid, func(dir string) error {
		return graphdriver.ChownPathByMaps(dir, toContainer, toHost)
	})
}

// SupportsShifting reports whether mounts can show the owners through
// the maps they are given (idmapped mounts): not when
// _CONTAINERS_OVERLAY_DISABLE_IDMAP=yes, as for overlay, nor where the
// kernel cannot idmap an EROFS mount under overlay (probed once).
func (a *adapter[F]) SupportsShifting(_, _ []idtools.IDMap) bool { return a.c.supportsShifting() }

// Extension methods (see Extension), forwarded to the core.

// Objects returns the object store.
func (a *adapter[F]) Objects() *dedup.Store { return a.c.contents.objects }

// Home returns the driver's directory.
func (a *adapter[F]) Home() string { return a.c.home }

// CheckImages verifies every layer's composefs images.
func (a *adapter[F]) CheckImages(ctx context.Context, mode CheckMode) ([]ImageProblem, error) {
	return a.c.checkImages(ctx, mode)
}

// FlatImages lists the cached flattened images and their sizes.
func (a *adapter[F]) FlatImages() (map[string]int64, error) { return a.c.images.list() }

// PrunePartialPullRepo removes the partial-pull repository's dangling
// links.
func (a *adapter[F]) PrunePartialPullRepo() (int, error) { return a.c.pull.prune() }

// DropFlatImage removes layer id's cached flattened image.
func (a *adapter[F]) DropFlatImage(id string) (bool, error) {
	if err := checkID(id); err != nil {
		return false, err
	}
	return a.c.images.drop(id)
}

// ReadOnlyStore returns the read-only image store that has layer id.
func (a *adapter[F]) ReadOnlyStore(id string) string { return a.c.readOnlyStore(id) }

// LayerObjects lists the objects layer id's own image uses.
func (a *adapter[F]) LayerObjects(ctx context.Context, id string) (map[dedup.Digest]int64, error) {
	return a.c.layerObjects(ctx, id)
}
