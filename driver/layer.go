package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrLayerUnknown is wrapped by errors about a layer the driver does not
// have.
var ErrLayerUnknown = errors.New("cfs: layer not known")

// Files of a layer directory, layers/<id>/.
const (
	layerMetaFile = "layer.json" // layerMeta, written last on create
	diffImageFile = "diff.cfs"   // the sealed layer's own composefs image
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
}

func (d *core) layerDir(id string) string { return filepath.Join(d.home, "layers", id) }
func (d *core) upperDir(id string) string { return filepath.Join(d.layerDir(id), upperDirName) }
func (d *core) workDir(id string) string  { return filepath.Join(d.layerDir(id), workDirName) }
func (d *core) diffImage(id string) string {
	return filepath.Join(d.layerDir(id), diffImageFile)
}

// flatImage is where the flattened image of the chain ending at id is
// cached.
func (d *core) flatImage(id string) string { return filepath.Join(d.home, "images", id+".cfs") }

// checkID refuses IDs that are not a single path component.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("cfs: invalid layer ID %q", id)
	}
	return nil
}

func (d *core) readMeta(id string) (layerMeta, error) {
	var m layerMeta
	if err := checkID(id); err != nil {
		return m, err
	}
	data, err := os.ReadFile(filepath.Join(d.layerDir(id), layerMetaFile))
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

// writeMeta replaces a layer's metadata atomically.
func (d *core) writeMeta(dir string, m layerMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, layerMetaFile), data)
}

// writeFileAtomic writes data to a temporary file beside path, syncs it
// and renames it into place.
func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic writes a file beside path with write, syncs it and renames
// it into place; on any error the temporary file is removed.
func writeAtomic(path string, write func(io.Writer) error) error {
	return writeAtomicThen(path, write, nil)
}

// writeAtomicThen is writeAtomic that runs before (if not nil) after the
// file is written and synced, just before it is renamed into place.
func writeAtomicThen(path string, write func(io.Writer) error, before func() error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("cfs: write %s: %w", path, err)
	}
	werr := write(f)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil && before != nil {
		werr = before()
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cfs: write %s: %w", path, werr)
	}
	return nil
}

// syncDir fsyncs a directory so that renames into it are durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
