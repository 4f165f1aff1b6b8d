package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
)

// ErrLayerUnknown is wrapped by errors about a layer the driver does not
// have.
var ErrLayerUnknown = errors.New("cfs: layer not known")

// Files of a layer directory, layers/<id>/.
const (
	layerMetaFile = "layer.json" // layerMeta, written last on create
	diffImageFile = "diff.cfs"   // the sealed layer's own composefs image
	baseImageFile = "base.cfs"   // a remapped layer's base (layerMeta.Base)
	upperDirName  = "upper"      // overlay upper dir of a writable layer
	workDirName   = "work"       // overlay work dir of a writable layer
)

// layerMeta is a layer's state on disk.
type layerMeta struct {
	// Parent is the parent layer's ID, "" for a base layer.
	Parent string `json:"parent,omitempty"`
	// Sealed is true once the layer's content is its diff image; until
	// then it is the overlay upper directory.
	Sealed bool `json:"sealed"`
	// Container is true for layers made by CreateReadWrite: they are
	// sealed only when another layer is created on them.
	Container bool `json:"container,omitempty"`
	// Upper is true while a sealed layer has an overlay upper directory
	// of changes made through a writable mount (Get without "ro") that
	// are not yet folded into its diff image; the last Put folds them.
	Upper bool `json:"upper,omitempty"`
	// Base is true for a layer whose owners were remapped for other ID
	// mappings than its parent's (UpdateLayerIDMap, idmap.go): its own
	// diff applies to its base image (base.cfs), the tree of its parent
	// chain with the owners remapped, instead of to the chain itself.
	Base bool `json:"base,omitempty"`
	// Flat is true for a sealed base layer whose diff image is also the
	// flattened image of its one-layer chain (layers.IsFlat): the image
	// cache links it instead of writing a copy.
	Flat bool `json:"flat,omitempty"`
}

// layerKind says what a new writable layer is for.
type layerKind int

const (
	// imageLayer is a layer of an image: sealed when a tar is applied to
	// it or a child is created on it.
	imageLayer layerKind = iota
	// containerLayer is a container's layer (CreateReadWrite): sealed
	// only when another layer is created on it.
	containerLayer
)

// layerStore keeps the layers' directories, <home>/layers/<id>: each
// layer's metadata (layer.json), its diff image once sealed, and its
// overlay upper and work directories while it is writable. New layer
// directories are built under a hidden name and renamed into place, so a
// layer appears whole or not at all.
//
// It also finds the layers of read-only image stores (other stores' cfs
// homes, <store>/cfs/layers/<id>), after its own, and never writes there.
// A layer that is still writable in a read-only store (never sealed
// there) is used through a sealed snapshot kept in this store,
// <home>/snapshots/<id>: its diff image, its objects in this store's
// object store.
type layerStore struct {
	dir       string   // <home>/layers
	peer      string   // layers directory of the split store's other home, or ""
	ro        []string // layers directories of read-only stores, in lookup order
	snapshots string   // <home>/snapshots
}

// layerHome says which store holds a layer.
type layerHome int

const (
	ownLayer  layerHome = iota // this store's (or unknown)
	peerLayer                  // the split store's other home's (see core.peer)
	roLayer                    // a read-only image store's
)

// where returns the directory of layer id and whose it is: this store's
// own; else the peer home's (a split store's other half); else that of
// the first read-only store that has it, or its snapshot here if there
// is one. An unknown layer gives this store's path.
func (s *layerStore) where(id string) (string, layerHome) {
	own := filepath.Join(s.dir, id)
	if len(s.ro) == 0 && s.peer == "" {
		return own, ownLayer
	}
	if _, err := os.Lstat(own); err == nil {
		return own, ownLayer
	}
	if s.peer != "" {
		if p := filepath.Join(s.peer, id); exists(p) {
			return p, peerLayer
		}
	}
	for _, d := range s.ro {
		p := filepath.Join(d, id)
		if !exists(p) {
			continue
		}
		if snap := filepath.Join(s.snapshots, id); exists(filepath.Join(snap, layerMetaFile)) {
			return snap, roLayer
		}
		return p, roLayer
	}
	return own, ownLayer
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func (s *layerStore) path(id string) string {
	dir, _ := s.where(id)
	return dir
}

// home says whose layer id is.
func (s *layerStore) home(id string) layerHome {
	_, h := s.where(id)
	return h
}

// readOnly reports whether layer id is a read-only store's.
func (s *layerStore) readOnly(id string) bool { return s.home(id) == roLayer }

// errReadOnly is the error for a change to a read-only store's layer.
func errReadOnly(id, what string) error {
	return fmt.Errorf("cfs: %s %s: the layer is in a read-only image store", what, id)
}

func (s *layerStore) upperDir(id string) string { return filepath.Join(s.path(id), upperDirName) }
func (s *layerStore) workDir(id string) string  { return filepath.Join(s.path(id), workDirName) }
func (s *layerStore) diffImage(id string) string {
	return filepath.Join(s.path(id), diffImageFile)
}
func (s *layerStore) baseImage(id string) string {
	return filepath.Join(s.path(id), baseImageFile)
}

// checkID refuses IDs that are not a single path component.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("cfs: invalid layer ID %q", id)
	}
	return nil
}

// readMeta reads layer id's metadata; ErrLayerUnknown if it has none.
func (s *layerStore) readMeta(id string) (layerMeta, error) {
	var m layerMeta
	if err := checkID(id); err != nil {
		return m, err
	}
	data, err := os.ReadFile(filepath.Join(s.path(id), layerMetaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("%w: %s", ErrLayerUnknown, id)
	}
	if err != nil {
		return m, fmt.Errorf("cfs: read layer %s: %w", id, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("cfs: layer %s: damaged %s: %w", id, layerMetaFile, err)
	}
	return m, nil
}

// writeMeta replaces layer id's metadata atomically.
func (s *layerStore) writeMeta(id string, m layerMeta) error {
	dir, h := s.where(id)
	if h == roLayer {
		return errReadOnly(id, "write metadata of")
	}
	return writeMetaIn(dir, m)
}

// writeMetaIn writes the metadata file of the layer directory dir (a
// layer's, or one being built) atomically.
func writeMetaIn(dir string, m layerMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, layerMetaFile), data, atomicfile.Options{}); err != nil {
		return fmt.Errorf("cfs: %w", err)
	}
	return nil
}

// exists reports whether layer id has readable metadata.
func (s *layerStore) exists(id string) bool {
	_, err := s.readMeta(id)
	return err == nil
}

// list returns every layer's ID.
func (s *layerStore) list() ([]string, error) {
	names, err := readDirNames(s.dir)
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

// parents maps every layer with readable metadata to its parent.
func (s *layerStore) parents() (map[string]string, error) {
	ids, err := s.list()
	if err != nil {
		return nil, err
	}
	parent := make(map[string]string, len(ids))
	for _, id := range ids {
		if m, err := s.readMeta(id); err == nil {
			parent[id] = m.Parent
		}
	}
	return parent, nil
}

// rootAttrs are the mode and owner of a layer's root directory.
type rootAttrs struct {
	mode     uint32
	uid, gid uint32
}

// createWritable makes the writable layer id: empty upper and work
// directories (the upper's root with root's mode and owner, which
// overlay shows) and metadata m.
func (s *layerStore) createWritable(id string, m layerMeta, root rootAttrs) error {
	return s.build(id, func(dir string) error {
		upper := filepath.Join(dir, upperDirName)
		if err := makeUpper(upper, filepath.Join(dir, workDirName), root); err != nil {
			return err
		}
		// No fsync: the directory appears whole by the rename, and a
		// layer a crash loses before its content is sealed (with syncs)
		// had nothing to lose; c/storage removes such incomplete layers,
		// and removing a missing or damaged layer succeeds.
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, layerMetaFile), data, 0o600)
	})
}

// makeUpper makes an empty overlay upper and work directory, the upper
// with root's mode and owner.
func makeUpper(upper, work string, root rootAttrs) error {
	for _, dir := range []string{upper, work} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
	}
	if err := os.Chmod(upper, os.FileMode(root.mode&0o777)|modeBits(root.mode)); err != nil {
		return err
	}
	return os.Lchown(upper, int(root.uid), int(root.gid))
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

// build makes layer id's directory with fill under a hidden temporary
// name and renames it into place. It refuses an ID already in use.
func (s *layerStore) build(id string, fill func(dir string) error) error {
	if _, err := os.Lstat(s.path(id)); err == nil {
		return fmt.Errorf("cfs: layer %s already exists", id)
	}
	tmp, err := os.MkdirTemp(s.dir, ".new-")
	if err != nil {
		return fmt.Errorf("cfs: create %s: %w", id, err)
	}
	defer os.RemoveAll(tmp)
	if err := fill(tmp); err != nil {
		return fmt.Errorf("cfs: create %s: %w", id, err)
	}
	if err := os.Rename(tmp, s.path(id)); err != nil {
		return fmt.Errorf("cfs: create %s: %w", id, err)
	}
	return nil
}

// resetUpper gives layer id an empty upper and work directory, the upper
// with root's mode and owner.
func (s *layerStore) resetUpper(id string, root rootAttrs) error {
	for _, dir := range []string{s.upperDir(id), s.workDir(id)} {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return makeUpper(s.upperDir(id), s.workDir(id), root)
}

// dropUpper removes layer id's upper and work directories (not those of
// a read-only store's layer).
func (s *layerStore) dropUpper(id string) {
	dir, h := s.where(id)
	if h == roLayer {
		return
	}
	os.RemoveAll(filepath.Join(dir, upperDirName))
	os.RemoveAll(filepath.Join(dir, workDirName))
}

// snapshot makes the sealed snapshot of the read-only store's layer id
// with fill, under a hidden name renamed into place.
func (s *layerStore) snapshot(id string, fill func(dir string) error) error {
	if err := os.MkdirAll(s.snapshots, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(s.snapshots, ".new-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := fill(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.snapshots, id)); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return err // another process made it meanwhile: theirs is as good
	}
	return atomicfile.SyncDir(s.snapshots)
}

// staleSnapshots returns the snapshots kept here, and removes those of
// layers no read-only store has any more (and half-made ones): their
// IDs are returned in gone. While a read-only store is missing (a
// network file system not mounted yet, say) every snapshot is kept.
func (s *layerStore) staleSnapshots() (kept, gone []string, err error) {
	names, err := readDirNames(s.snapshots)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	all := true
	for _, d := range s.ro {
		if _, err := os.Stat(d); err != nil {
			all = false
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			os.RemoveAll(filepath.Join(s.snapshots, n))
			continue
		}
		if s.home(n) == roLayer || !all {
			kept = append(kept, n)
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.snapshots, n)); err != nil {
			return kept, gone, err
		}
		gone = append(gone, n)
	}
	return kept, gone, nil
}

// removeTemps removes what interrupted work left in the store: layer
// directories being built, and the temporary files (".tmp-*") of atomic
// writes in each layer's directory.
func (s *layerStore) removeTemps() error {
	names, err := readDirNames(s.dir)
	if err != nil {
		return fmt.Errorf("cfs: recover: %w", err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			os.RemoveAll(filepath.Join(s.dir, n))
			continue
		}
		removeTemps(s.path(n))
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
