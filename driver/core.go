package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chrootarchive"
	"go.podman.io/storage/pkg/directory"
	"go.podman.io/storage/pkg/idtools"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// core is the driver's logic, free of containers/storage types; adapter
// wraps it in the graphdriver interface. It coordinates three
// collaborators, each with one job: the layer store (layers' directories
// and metadata, layer.go), the image cache (diff images read and
// checked, flattened images built and kept, imagecache.go) and the
// contents (the object store and host sharing, contents.go); and it
// mounts (mount.go).
//
// Layer lifecycle: Create makes a writable layer (an overlay upper
// directory over the flattened image of its parent chain). It is sealed,
// its upper directory turned into its own composefs diff image, when a
// tar is applied to it or a child layer is created on it. Mounting a
// layer mounts the flattened image of its chain (built at the first
// mount, cached under images/) as a detached EROFS mount, and one overlay
// on it with the object store as a data-only lower and, for a writable
// layer, its upper directory. A layer remapped for other ID mappings than
// its parent's has a base image in place of its parent chain, and a
// mount given ID mappings idmaps the EROFS mount (idmap.go).
type core struct {
	home     string // <graphroot>/cfs
	run      string // <runroot>/cfs
	opts     Options
	layers   *layerStore
	images   *imageCache
	contents *contents
	pull     *pullRepo // where partial pulls find contents by SHA-256
	lock     *os.File  // driver.lock, held shared while the core is open

	// detachedRefused is set once the kernel has refused a detached
	// mount as an overlay layer: kernels before 6.15 cannot clone one
	// ("overlayfs: failed to clone lowerpath" in the kernel log, EINVAL).
	detachedRefused atomic.Bool

	// peer is, in a split store (graphroot and imagestore), the core of
	// the other home: the image store's keeps image layers, the graph
	// root's container layers. Each finds the other's layers and objects;
	// work on a layer goes to its owner.
	peer *core
	// imageCore is, in the graph root's core of a split store, the core
	// that creates image layers (its peer); nil otherwise.
	imageCore *core

	// idmap is the kernel's answer about idmapped mounts (idmap.go).
	idmap idmapProbe

	mu     sync.Mutex
	mounts map[string]*mountState
}

// openSplit opens the image store's home of a split store, imageHome
// (<imagestore>/cfs), as d's peer: a complete cfs home of its own, where
// image layers and their objects go, so that the image store works on
// its own too.
func (d *core) openSplit(imageHome string) error {
	p, err := newCore(imageHome, filepath.Dir(d.run), d.opts)
	if err != nil {
		return fmt.Errorf("cfs: image store: %w", err)
	}
	d.peer, p.peer, d.imageCore = p, d, p
	d.layers.peer, p.layers.peer = p.layers.dir, d.layers.dir
	d.contents.ro = append([]string{p.contents.objects.ObjectsDir()}, d.contents.ro...)
	p.contents.ro = append([]string{d.contents.objects.ObjectsDir()}, p.contents.ro...)
	return nil
}

// owner is the core that keeps layer id: d, or in a split store the
// peer when the layer is in the other home.
func (d *core) owner(id string) *core {
	if d.peer != nil && d.layers.home(id) == peerLayer {
		return d.peer
	}
	return d
}

// forImages is the core where image layers are created: the image
// store's in a split store, else d.
func (d *core) forImages() *core {
	if d.imageCore != nil {
		return d.imageCore
	}
	return d
}

// homes are the directories this core and its peer keep layers in.
func (d *core) homes() []string {
	if d.imageCore != nil {
		return []string{d.home, d.imageCore.home}
	}
	return []string{d.home}
}

// newCore opens (creating if needed) the driver's home and object store
// and removes leftovers of interrupted work.
func newCore(home, runRoot string, opts Options) (*core, error) {
	d := &core{home: home, run: filepath.Join(runRoot, "cfs"), opts: opts, mounts: map[string]*mountState{}}
	for _, dir := range []string{home, filepath.Join(home, "layers"), filepath.Join(home, "images"), filepath.Join(home, "tmp"), d.run, filepath.Join(d.run, "mnt")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cfs: create %s: %w", dir, err)
		}
	}
	c, err := openContents(home, opts)
	if err != nil {
		return nil, err
	}
	d.contents = c
	d.pull = newPullRepo(home)
	d.layers = &layerStore{dir: filepath.Join(home, "layers"), snapshots: filepath.Join(home, "snapshots")}
	for _, store := range opts.ImageStores {
		d.layers.ro = append(d.layers.ro, filepath.Join(store, Name, "layers"))
	}
	d.images = &imageCache{dir: filepath.Join(home, "images"), layers: d.layers, mode: opts.Verity, verity: c.objects.VerityEnabled()}
	if err := d.openLock(); err != nil {
		c.close(false)
		return nil, err
	}
	return d, nil
}

// openLock takes the driver's lock (<home>/driver.lock) shared for the
// life of this core, so that other processes know it is in use. A process
// that finds no other user (it gets the lock exclusively) first recovers
// from interrupted work: the temporary files it removes cannot then be
// another live process's work in progress.
func (d *core) openLock() error {
	f, err := os.OpenFile(filepath.Join(d.home, "driver.lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("cfs: open driver lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		if err := d.recover(); err != nil {
			f.Close()
			return err
		}
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return fmt.Errorf("cfs: driver lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return fmt.Errorf("cfs: driver lock: %w", err)
	}
	d.lock = f
	return nil
}

// recover removes what interrupted work left: temporary layer and image
// files, the refs of layers whose removal was cut short, and the upper
// directories of layers sealed just before a crash. It runs only while
// no other process has the driver open (openLock).
func (d *core) recover() error {
	if err := os.RemoveAll(filepath.Join(d.home, "tmp")); err != nil {
		return fmt.Errorf("cfs: clean tmp: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(d.home, "tmp"), 0o700); err != nil {
		return err
	}
	if err := d.layers.removeTemps(); err != nil {
		return err
	}
	if err := d.images.removeTemps(); err != nil {
		return err
	}
	ids, err := d.layers.list()
	if err != nil {
		return err
	}
	// Snapshots of read-only stores' layers keep refs too; those of
	// layers the stores no longer have go, with their refs.
	snapshots, _, err := d.layers.staleSnapshots()
	if err != nil {
		return fmt.Errorf("cfs: recover: snapshots: %w", err)
	}
	if err := d.contents.dropStaleRefs(context.Background(), append(snapshots, ids...)); err != nil {
		return fmt.Errorf("cfs: recover: %w", err)
	}
	for _, id := range ids {
		m, err := d.layers.readMeta(id)
		switch {
		case err != nil || !m.Sealed || d.mountedElsewhere(id):
		case m.Upper:
			// Changes made through a writable mount that a crash kept
			// from being folded in: fold them now (folding is
			// idempotent, should it have been under way).
			if err := d.foldUpper(context.Background(), id); err != nil {
				return fmt.Errorf("cfs: recover: %w", err)
			}
		default:
			d.layers.dropUpper(id)
		}
	}
	return nil
}

// close unmounts what this process mounted, collects the objects of
// layers removed in this process, and closes the store.
func (d *core) close() error {
	err := d.cleanup()
	if d.imageCore != nil {
		if cerr := d.imageCore.close(); err == nil {
			err = cerr
		}
	}
	collect := err == nil && d.contents.removedLayers()
	if cerr := d.contents.close(err == nil); err == nil {
		err = cerr
	}
	if collect {
		if _, perr := d.pull.prune(); err == nil {
			err = perr
		}
	}
	if d.lock != nil {
		d.lock.Close() // releases the shared lock
	}
	return err
}

// create makes a writable layer on parent (sealing parent first).
func (d *core) create(ctx context.Context, id, parent string, kind layerKind) error {
	return d.createOwned(ctx, id, parent, kind, 0, 0)
}

// createOwned is create where a layer with no parent gets a root owned
// by uid:gid (the root of the ID mappings it is created with, as overlay
// has it); a layer on a parent gets the parent's root.
func (d *core) createOwned(ctx context.Context, id, parent string, kind layerKind, uid, gid uint32) error {
	if err := checkID(id); err != nil {
		return err
	}
	root := rootAttrs{mode: 0o555, uid: uid, gid: gid}
	if parent != "" {
		if err := d.seal(ctx, parent); err != nil {
			return fmt.Errorf("cfs: create %s on %s: %w", id, parent, err)
		}
		// The root of the parent's chain has the metadata of the parent's
		// own root (layers.Merge gives the upper root's): no need to
		// flatten the chain, which waits for the first mount.
		r, err := imageRoot(d.layers.diffImage(parent))
		if err != nil {
			return fmt.Errorf("cfs: create %s on %s: %w", id, parent, err)
		}
		root = rootAttrs{mode: r.Mode & 0o7777, uid: r.UID, gid: r.GID}
	}
	return d.layers.createWritable(id, layerMeta{Parent: parent, Container: kind == containerLayer}, root)
}

// seal turns a writable layer's upper directory into its diff image. A
// sealed layer is left alone; a read-only store's layer gets a sealed
// snapshot here instead.
func (d *core) seal(ctx context.Context, id string) error {
	if o := d.owner(id); o != d {
		return o.seal(ctx, id)
	}
	m, err := d.layers.readMeta(id)
	if err != nil || m.Sealed {
		return err
	}
	_, err = d.sealUpper(ctx, id, m)
	return err
}

// sealUpper seals the writable layer id (metadata m): its upper
// directory, read over its base, becomes its diff image.
func (d *core) sealUpper(ctx context.Context, id string, m layerMeta) (*tree.Tree, error) {
	lower, err := d.baseTree(ctx, id, m)
	if err != nil {
		return nil, fmt.Errorf("cfs: seal %s: %w", id, err)
	}
	if d.layers.readOnly(id) {
		return nil, d.snapshot(ctx, id, m, lower)
	}
	diff, err := d.commitLayer(ctx, id, m, func(contents layers.Contents) (*tree.Tree, error) {
		return layers.FromUpper(ctx, d.layers.upperDir(id), lower, contents, d.contents.ingestOptions(nil))
	})
	if err != nil {
		return nil, fmt.Errorf("cfs: seal %s: %w", id, err)
	}
	return diff, nil
}

// baseTree is the tree layer id's own diff applies to: its base image
// for a remapped layer (layerMeta.Base), else the merged tree of its
// parent chain; nil for a layer with neither.
func (d *core) baseTree(ctx context.Context, id string, m layerMeta) (*tree.Tree, error) {
	switch {
	case m.Base:
		return d.images.readBase(id)
	case m.Parent != "":
		return d.flatTree(ctx, m.Parent)
	}
	return nil, nil
}

// snapshot seals the read-only store's writable layer id into this
// store: its diff image (built from its upper directory, read only) in a
// snapshot directory, its contents in this store's object store under
// the layer's refs.
func (d *core) snapshot(ctx context.Context, id string, m layerMeta, lower *tree.Tree) error {
	upper := d.layers.upperDir(id)
	// A remapped layer's snapshot has its base (lower) too.
	var base *tree.Tree
	if m.Base {
		base = lower
	}
	err := d.layers.snapshot(id, func(dir string) error {
		if base != nil {
			if err := d.images.writeBase(filepath.Join(dir, baseImageFile), base); err != nil {
				return err
			}
		}
		_, err := d.contents.commit(ctx, id, func(contents layers.Contents) (*tree.Tree, error) {
			return layers.FromUpper(ctx, upper, lower, contents, d.contents.ingestOptions(nil))
		}, func(t *tree.Tree) error {
			return writeImage(filepath.Join(dir, diffImageFile), t)
		}, base)
		if err != nil {
			return err
		}
		return writeMetaIn(dir, layerMeta{Parent: m.Parent, Sealed: true, Base: m.Base})
	})
	if err != nil {
		return fmt.Errorf("cfs: snapshot %s of a read-only image store: %w", id, err)
	}
	return nil
}

// sealing runs f, which works on a chain of sealed layers; when it meets
// a layer not yet sealed (errUnsealed: a layer below another is sealed
// when the other is created, but a store may hold older chains), that
// layer is sealed and f runs again.
func (d *core) sealing(ctx context.Context, f func() error) error {
	for tries := 0; ; tries++ {
		err := f()
		var u *errUnsealed
		if !errors.As(err, &u) || tries > maxChainDepth {
			return err
		}
		if err := d.seal(ctx, u.id); err != nil {
			return err
		}
	}
}

// flatTree is the merged tree of the chain ending at layer id (sealed).
func (d *core) flatTree(ctx context.Context, id string) (t *tree.Tree, err error) {
	err = d.sealing(ctx, func() error {
		t, err = d.images.flatTree(ctx, id)
		return err
	})
	return t, err
}

// ensureFlat builds the flattened image of the chain ending at layer id
// (sealed) unless it is cached.
func (d *core) ensureFlat(ctx context.Context, id string) error {
	return d.sealing(ctx, func() error { return d.images.ensure(ctx, id) })
}

// applyDiff ingests a layer tar into the writable layer id and seals it;
// it returns the size of the layer's contents. Owners in the tar are
// container IDs, stored as host IDs through mappings (nil for none).
//
// An empty layer that is not mounted takes the tar straight into its
// diff image. A layer whose upper directory has content, or that is
// mounted (here or by another process), gets the tar extracted into its
// upper directory over what is there, as overlay extracts into its diff
// directory, so that the mount shows it; the upper directory is then
// sealed.
func (d *core) applyDiff(ctx context.Context, id string, r io.Reader, mappings *idtools.IDMappings) (int64, error) {
	if o := d.owner(id); o != d {
		return o.applyDiff(ctx, id, r, mappings)
	}
	m, err := d.layers.readMeta(id)
	if err != nil {
		return 0, err
	}
	if m.Sealed {
		return 0, fmt.Errorf("cfs: apply diff to %s: the layer is sealed", id)
	}
	upper := d.layers.upperDir(id)
	names, err := readDirNames(upper)
	if err != nil {
		return 0, fmt.Errorf("cfs: apply diff to %s: %w", id, err)
	}
	if len(names) > 0 || d.mounted(id) {
		return d.applyDiffToUpper(ctx, id, m, r, mappings)
	}
	mapIDs := idMapper(mappings)
	diff, err := d.commitLayer(ctx, id, m, func(contents layers.Contents) (*tree.Tree, error) {
		t, stats, err := layers.Ingest(ctx, r, contents, d.contents.ingestOptions(mapIDs))
		if err == nil && !stats.RootEntry {
			err = rootFromDir(t.Root, upper)
		}
		return t, err
	})
	if err != nil {
		return 0, fmt.Errorf("cfs: apply diff to %s: %w", id, err)
	}
	return layers.DiffSize(diff), nil
}

// applyDiffToUpper extracts a layer tar into the writable layer id's
// upper directory (in a chroot, whiteouts as overlay has them) and seals
// the layer.
func (d *core) applyDiffToUpper(ctx context.Context, id string, m layerMeta, r io.Reader, mappings *idtools.IDMappings) (int64, error) {
	if mappings == nil {
		mappings = &idtools.IDMappings{}
	}
	err := chrootarchive.UntarUncompressed(r, d.layers.upperDir(id), &archive.TarOptions{
		UIDMaps:        mappings.UIDs(),
		GIDMaps:        mappings.GIDs(),
		WhiteoutFormat: archive.OverlayWhiteoutFormat,
	})
	if err != nil {
		return 0, fmt.Errorf("cfs: apply diff to %s: extract into its upper directory: %w", id, err)
	}
	diff, err := d.sealUpper(ctx, id, m)
	if err != nil {
		return 0, fmt.Errorf("cfs: apply diff to %s: %w", id, err)
	}
	return layers.DiffSize(diff), nil
}

// mounted reports whether layer id is mounted, by this process or by
// another one.
func (d *core) mounted(id string) bool {
	d.mu.Lock()
	_, ok := d.mounts[id]
	d.mu.Unlock()
	return ok || d.mountedElsewhere(id)
}

// commitLayer builds a layer's diff tree with build (its contents
// stored), writes it as the layer's image, registers the objects it uses
// as the layer's refs and marks the layer sealed. A crash before the
// last step leaves the layer unsealed and the objects collectable.
//
// A remapped layer's refs also hold the objects of its base image. The
// upper directory of a layer still mounted (here or elsewhere) stays
// until the unmount: the mount uses it.
func (d *core) commitLayer(ctx context.Context, id string, m layerMeta, build func(layers.Contents) (*tree.Tree, error)) (*tree.Tree, error) {
	var base *tree.Tree
	if m.Base {
		var err error
		if base, err = d.images.readBase(id); err != nil {
			return nil, err
		}
	}
	diff, err := d.contents.commit(ctx, id, build, func(t *tree.Tree) error {
		if err := writeImage(d.layers.diffImage(id), t); err != nil {
			return err
		}
		// Its digest was computed from the bytes written: a first mount
		// in this process need not check it again.
		d.images.checks.trust(d.layers.diffImage(id))
		return nil
	}, base)
	if err != nil {
		return nil, err
	}
	m.Sealed = true
	m.Flat = m.Parent == "" && !m.Base && layers.IsFlat(diff)
	if err := d.layers.writeMeta(id, m); err != nil {
		return nil, err
	}
	if !d.mounted(id) {
		d.layers.dropUpper(id)
	}
	return diff, nil
}

// rootFromDir gives n the mode and owner of the directory dir.
func rootFromDir(n *tree.Node, dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	n.Mode, n.UID, n.GID = st.Mode, st.Uid, st.Gid
	return nil
}

// remove deletes a layer: unmounts it, moves its directory out of the
// way (so the layer is gone at once) and returns a function that deletes
// the files.
func (d *core) remove(id string) (func() error, error) {
	noop := func() error { return nil }
	if err := checkID(id); err != nil {
		return noop, err
	}
	if o := d.owner(id); o != d {
		return o.remove(id)
	}
	if _, err := os.Lstat(d.layers.path(id)); errors.Is(err, fs.ErrNotExist) {
		return noop, nil // gone already (a crash may lose a layer just created)
	}
	if d.layers.readOnly(id) {
		return noop, errReadOnly(id, "remove")
	}
	// A layer whose layer.json is damaged is removed all the same.
	if err := d.unmountAll(id); err != nil {
		return noop, err
	}
	trash, err := os.MkdirTemp(filepath.Join(d.home, "tmp"), "rm-")
	if err != nil {
		return noop, fmt.Errorf("cfs: remove %s: %w", id, err)
	}
	cleanup := func() error { return os.RemoveAll(trash) }
	// The flattened image goes first: a crash before the layer goes
	// leaves a layer whose image is rebuilt when needed, never an image
	// without its layer.
	for i, p := range d.images.files(id) {
		if err := os.Rename(p, filepath.Join(trash, fmt.Sprintf("image%d", i))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return cleanup, fmt.Errorf("cfs: remove %s: %w", id, err)
		}
	}
	if err := os.Rename(d.layers.path(id), filepath.Join(trash, "layer")); err != nil {
		return cleanup, fmt.Errorf("cfs: remove %s: %w", id, err)
	}
	if err := d.contents.dropRefs(context.Background(), id); err != nil {
		return cleanup, fmt.Errorf("cfs: remove %s: %w", id, err)
	}
	return cleanup, nil
}

// metadata says where layer id's files are.
func (d *core) metadata(id string) (map[string]string, error) {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return nil, err
	}
	md := map[string]string{"MergedDir": d.mergedDir(id)}
	if m.Sealed {
		md["Image"] = d.layers.diffImage(id)
	} else {
		md["UpperDir"], md["WorkDir"] = d.layers.upperDir(id), d.layers.workDir(id)
	}
	return md, nil
}

// diskUsage is the disk usage of a writable layer's upper directory, or
// of a sealed layer's diff image.
func (d *core) diskUsage(id string) (*directory.DiskUsage, error) {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return nil, err
	}
	if !m.Sealed {
		return directory.Usage(d.layers.upperDir(id))
	}
	st, err := os.Stat(d.layers.diffImage(id))
	if err != nil {
		return nil, err
	}
	return &directory.DiskUsage{Size: st.Size(), InodeCount: 1}, nil
}

// readOnlyStore returns the graph root of the read-only image store
// that has layer id, or "".
func (d *core) readOnlyStore(id string) string {
	if d.layers.home(id) != roLayer {
		return ""
	}
	for i, dir := range d.layers.ro {
		if exists(filepath.Join(dir, id)) {
			return d.opts.ImageStores[i]
		}
	}
	return ""
}

// layerObjects lists the objects layer id's own tree uses, with their
// sizes (contents of a writable layer are hashed, not stored).
func (d *core) layerObjects(ctx context.Context, id string) (map[dedup.Digest]int64, error) {
	t, _, err := d.diffTree(ctx, id, layers.HashContents{})
	if err != nil {
		return nil, err
	}
	out := map[dedup.Digest]int64{}
	err = t.Walk(func(_ string, e tree.Dirent) error {
		if !e.HardLink && e.Node.IsExternal() && e.Node.Digest != nil {
			out[*e.Node.Digest] = int64(e.Node.Size)
		}
		return nil
	})
	return out, err
}
