package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// core is the driver's logic, free of containers/storage types; adapter
// wraps it in the graphdriver interface.
//
// Layer lifecycle: Create makes a writable layer (an overlay upper
// directory over the flattened image of its parent chain). It is sealed,
// its upper directory turned into its own composefs diff image, when a
// tar is applied to it or a child layer is created on it. Mounting a
// layer mounts the flattened image of its chain (built at the first
// mount, cached under images/) as a detached EROFS mount, and one overlay
// on it with the object store as a data-only lower and, for a writable
// layer, its upper directory.
type core struct {
	home    string // <graphroot>/cfs
	run     string // <runroot>/cfs
	opts    Options
	objects *dedup.Store
	host    *hostShare // nil without a host repository
	lock    *os.File   // driver.lock, held shared while the core is open

	checks imageChecks // images checked against their digests
	// detachedRefused is set once the kernel has refused a detached
	// mount as an overlay layer: kernels before 6.15 cannot clone one
	// ("overlayfs: failed to clone lowerpath" in the kernel log, EINVAL).
	detachedRefused atomic.Bool

	mu     sync.Mutex
	mounts map[string]*mountState
	// removed is set when a layer's refs were dropped: close then
	// collects the objects no layer uses any more.
	removed bool
}

// newCore opens (creating if needed) the driver's home and object store
// and removes leftovers of interrupted work.
func newCore(home, runRoot string, opts Options) (*core, error) {
	d := &core{home: home, run: filepath.Join(runRoot, "cfs"), opts: opts, mounts: map[string]*mountState{}, host: newHostShare(home, opts)}
	for _, dir := range []string{home, filepath.Join(home, "layers"), filepath.Join(home, "images"), filepath.Join(home, "tmp"), d.run, filepath.Join(d.run, "mnt")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cfs: create %s: %w", dir, err)
		}
	}
	verity := map[string]dedup.VerityMode{"none": dedup.VerityOff, "auto": dedup.VerityAuto, "require": dedup.VerityRequire}[opts.Verity]
	objects, err := dedup.Open(home, dedup.Options{Verity: verity})
	if err != nil {
		return nil, fmt.Errorf("cfs: open object store: %w", err)
	}
	d.objects = objects
	if err := d.openLock(); err != nil {
		objects.Close()
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
// files, and the upper directories of layers sealed just before a crash.
// It runs only while no other process has the driver open (openLock).
func (d *core) recover() error {
	if err := os.RemoveAll(filepath.Join(d.home, "tmp")); err != nil {
		return fmt.Errorf("cfs: clean tmp: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(d.home, "tmp"), 0o700); err != nil {
		return err
	}
	for _, sub := range []string{"layers", "images"} {
		entries, err := os.ReadDir(filepath.Join(d.home, sub))
		if err != nil {
			return fmt.Errorf("cfs: recover: %w", err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				os.RemoveAll(filepath.Join(d.home, sub, e.Name()))
			}
		}
	}
	ids, err := d.listLayers()
	if err != nil {
		return err
	}
	if err := d.dropStaleRefs(ids); err != nil {
		return err
	}
	for _, id := range ids {
		removeTemps(d.layerDir(id))
		m, err := d.readMeta(id)
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
			os.RemoveAll(d.upperDir(id))
			os.RemoveAll(d.workDir(id))
		}
	}
	return nil
}

// dropStaleRefs drops the object refs of layers that are gone (a removal
// interrupted between moving the layer away and dropping its refs), so
// that their objects can be collected.
func (d *core) dropStaleRefs(ids []string) error {
	withRefs, err := d.objects.Layers()
	if err != nil {
		return fmt.Errorf("cfs: recover: list object refs: %w", err)
	}
	exists := map[string]bool{}
	for _, id := range ids {
		exists[id] = true
	}
	for _, id := range withRefs {
		if !exists[id] {
			if err := d.objects.DropRefs(context.Background(), id); err != nil && !errors.Is(err, dedup.ErrNotFound) {
				return fmt.Errorf("cfs: recover: drop refs of removed layer %s: %w", id, err)
			}
		}
	}
	return nil
}

// removeTemps removes the temporary files (".tmp-*") an interrupted
// atomic write left in dir.
func removeTemps(dir string) {
	names, _ := readDirNames(dir)
	for _, n := range names {
		if strings.HasPrefix(n, ".tmp-") {
			os.Remove(filepath.Join(dir, n))
		}
	}
}

// close unmounts what this process mounted, collects the objects of
// layers removed in this process, and closes the store.
func (d *core) close() error {
	err := d.cleanup()
	d.mu.Lock()
	removed := d.removed
	d.mu.Unlock()
	if removed && err == nil {
		if _, gerr := d.objects.GC(context.Background()); gerr != nil {
			err = fmt.Errorf("cfs: collect unused objects: %w", gerr)
		}
	}
	if cerr := d.host.close(); err == nil {
		err = cerr
	}
	if cerr := d.objects.Close(); err == nil {
		err = cerr
	}
	if d.lock != nil {
		d.lock.Close() // releases the shared lock
	}
	return err
}

// create makes a writable layer on parent (sealing parent first).
func (d *core) create(ctx context.Context, id, parent string, container bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	if _, err := os.Stat(d.layerDir(id)); err == nil {
		return fmt.Errorf("cfs: layer %s already exists", id)
	}
	rootMode, rootUID, rootGID := uint32(0o555), uint32(0), uint32(0)
	if parent != "" {
		if err := d.seal(ctx, parent); err != nil {
			return fmt.Errorf("cfs: create %s on %s: %w", id, parent, err)
		}
		// The root of the parent's chain has the metadata of the parent's
		// own root (layers.Merge gives the upper root's): no need to
		// flatten the chain, which waits for the first mount.
		root, err := imageRoot(d.diffImage(parent))
		if err != nil {
			return fmt.Errorf("cfs: create %s on %s: %w", id, parent, err)
		}
		rootMode, rootUID, rootGID = root.Mode&0o7777, root.UID, root.GID
	}
	tmp, err := os.MkdirTemp(filepath.Join(d.home, "layers"), ".new-")
	if err != nil {
		return fmt.Errorf("cfs: create %s: %w", id, err)
	}
	defer os.RemoveAll(tmp)
	upper := filepath.Join(tmp, upperDirName)
	for _, dir := range []string{upper, filepath.Join(tmp, workDirName)} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("cfs: create %s: %w", id, err)
		}
	}
	if err := os.Chmod(upper, os.FileMode(rootMode&0o777)|modeBits(rootMode)); err != nil {
		return fmt.Errorf("cfs: create %s: %w", id, err)
	}
	if err := os.Lchown(upper, int(rootUID), int(rootGID)); err != nil {
		return fmt.Errorf("cfs: create %s: %w", id, err)
	}
	// No fsync: the directory appears whole by the rename, and a layer a
	// crash loses before its content is sealed (with syncs) had nothing
	// to lose; c/storage removes such incomplete layers, and removing a
	// missing or damaged layer succeeds.
	meta, err := json.Marshal(layerMeta{Parent: parent, Container: container})
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, layerMetaFile), meta, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, d.layerDir(id))
	}
	if err != nil {
		return fmt.Errorf("cfs: create %s: %w", id, err)
	}
	return nil
}

// modeBits turns the setuid, setgid and sticky bits of a Unix mode into
// os.FileMode bits.
func modeBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

// seal turns a writable layer's upper directory into its diff image. A
// sealed layer is left alone.
func (d *core) seal(ctx context.Context, id string) error {
	m, err := d.readMeta(id)
	if err != nil || m.Sealed {
		return err
	}
	var lower *tree.Tree
	if m.Parent != "" {
		if lower, err = d.flatTree(ctx, m.Parent); err != nil {
			return fmt.Errorf("cfs: seal %s: %w", id, err)
		}
	}
	_, err = d.commitLayer(ctx, id, m, func(contents layers.Contents) (*tree.Tree, error) {
		return layers.FromUpper(ctx, d.upperDir(id), lower, contents, d.ingestOptions(nil))
	})
	if err != nil {
		return fmt.Errorf("cfs: seal %s: %w", id, err)
	}
	return nil
}

// applyDiff ingests a layer tar into the empty writable layer id and
// seals it; it returns the size of the layer's contents.
func (d *core) applyDiff(ctx context.Context, id string, r io.Reader, mapIDs layers.IDMapper) (int64, error) {
	m, err := d.readMeta(id)
	if err != nil {
		return 0, err
	}
	if m.Sealed {
		return 0, fmt.Errorf("cfs: apply diff to %s: the layer is sealed", id)
	}
	if names, err := readDirNames(d.upperDir(id)); err != nil || len(names) > 0 {
		return 0, fmt.Errorf("cfs: apply diff to %s: the layer already has content (%d entries, %v)", id, len(names), err)
	}
	diff, err := d.commitLayer(ctx, id, m, func(contents layers.Contents) (*tree.Tree, error) {
		t, stats, err := layers.Ingest(ctx, r, contents, d.ingestOptions(mapIDs))
		if err == nil && !stats.RootEntry {
			err = rootFromDir(t.Root, d.upperDir(id))
		}
		return t, err
	})
	if err != nil {
		return 0, fmt.Errorf("cfs: apply diff to %s: %w", id, err)
	}
	return layers.DiffSize(diff), nil
}

// commitLayer builds a layer's diff tree with build, storing contents in
// one ingest session, writes it as the layer's image, registers the
// objects it uses as the layer's refs and marks the layer sealed. Until
// the refs are committed the session pins the objects against GC; a crash
// before that leaves the layer unsealed and the objects collectable.
func (d *core) commitLayer(ctx context.Context, id string, m layerMeta, build func(layers.Contents) (*tree.Tree, error)) (*tree.Tree, error) {
	in, err := d.objects.BeginIngest(ctx)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			in.Abort()
		}
	}()
	insertOpts, err := d.host.insertOptions(ctx)
	if err != nil {
		return nil, err
	}
	// Nothing looks layer contents up by plain SHA-256 (yet: zstd:chunked
	// pulls would); skipping it halves the hashing per byte.
	insertOpts.NoSHA256 = true
	diff, err := build(ingestContents{in: in, opts: insertOpts})
	if err != nil {
		return nil, err
	}
	if err := pinTree(ctx, in, diff); err != nil {
		return nil, err
	}
	if err := writeImage(d.diffImage(id), diff); err != nil {
		return nil, err
	}
	if err := in.Commit(ctx, id); err != nil {
		return nil, fmt.Errorf("register objects: %w", err)
	}
	committed = true
	m.Sealed = true
	if err := d.writeMeta(d.layerDir(id), m); err != nil {
		return nil, err
	}
	d.mu.Lock()
	_, mounted := d.mounts[id]
	d.mu.Unlock()
	if !mounted {
		os.RemoveAll(d.upperDir(id))
		os.RemoveAll(d.workDir(id))
	}
	return diff, nil
}

// pinTree pins every object t uses in the session, including those it
// did not insert (a metacopy file reuses its lower file's object).
func pinTree(ctx context.Context, in *dedup.Ingest, t *tree.Tree) error {
	return t.Walk(func(p string, e tree.Dirent) error {
		if e.HardLink || !e.Node.IsExternal() {
			return nil
		}
		if e.Node.Digest == nil {
			return fmt.Errorf("%s: external file without a digest", p)
		}
		if err := in.Ref(ctx, *e.Node.Digest); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
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

func (d *core) ingestOptions(mapIDs layers.IDMapper) layers.IngestOptions {
	limit := d.opts.InlineThreshold
	if limit == 0 {
		limit = -1
	}
	// Contents up to 1 MiB are stored on one worker per CPU while the
	// tar goes on being read (and decompressed, upstream).
	return layers.IngestOptions{InlineLimit: limit, MapIDs: mapIDs, Workers: runtime.GOMAXPROCS(0)}
}

// remove deletes a layer: unmounts it, moves its directory out of the
// way (so the layer is gone at once) and returns a function that deletes
// the files.
func (d *core) remove(id string) (func() error, error) {
	noop := func() error { return nil }
	if err := checkID(id); err != nil {
		return noop, err
	}
	if _, err := os.Lstat(d.layerDir(id)); errors.Is(err, fs.ErrNotExist) {
		return noop, nil // gone already (a crash may lose a layer just created)
	}
	// A layer whose layer.json is damaged is removed all the same.
	if err := d.unmountAll(id); err != nil {
		return noop, err
	}
	trash, err := os.MkdirTemp(filepath.Join(d.home, "tmp"), "rm-")
	if err != nil {
		return func() error { return nil }, fmt.Errorf("cfs: remove %s: %w", id, err)
	}
	cleanup := func() error { return os.RemoveAll(trash) }
	// The flattened image goes first: a crash before the layer goes
	// leaves a layer whose image is rebuilt when needed, never an image
	// without its layer.
	for i, p := range []string{d.flatImage(id), d.flatImage(id) + digestSuffix} {
		if err := os.Rename(p, filepath.Join(trash, fmt.Sprintf("image%d", i))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return cleanup, fmt.Errorf("cfs: remove %s: %w", id, err)
		}
	}
	if err := os.Rename(d.layerDir(id), filepath.Join(trash, "layer")); err != nil {
		return cleanup, fmt.Errorf("cfs: remove %s: %w", id, err)
	}
	// A layer that was never sealed (a container's) registered no refs,
	// and its removal frees no object: no collection needed for it.
	err = d.objects.DropRefs(context.Background(), id)
	switch {
	case errors.Is(err, dedup.ErrNotFound):
	case err != nil:
		return cleanup, fmt.Errorf("cfs: remove %s: drop object refs: %w", id, err)
	default:
		d.mu.Lock()
		d.removed = true
		d.mu.Unlock()
	}
	return cleanup, nil
}

func (d *core) exists(id string) bool {
	_, err := d.readMeta(id)
	return err == nil
}

func (d *core) listLayers() ([]string, error) {
	names, err := readDirNames(filepath.Join(d.home, "layers"))
	if err != nil {
		return nil, fmt.Errorf("cfs: list layers: %w", err)
	}
	ids := names[:0]
	for _, n := range names {
		if !strings.HasPrefix(n, ".") {
			ids = append(ids, n)
		}
	}
	return ids, nil
}

func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}
