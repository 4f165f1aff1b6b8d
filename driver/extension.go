package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	graphdriver "go.podman.io/storage/drivers"

	"github.com/cfs-storage/cfs-storage/dedup"
)

// Extension is what the cfs driver offers beyond graphdriver.Driver:
// its object store, for reports (df), fsck and gc. Get it from a store's
// driver with AsExtension.
type Extension interface {
	// Objects is the driver's content-addressed object store; the refs
	// of a sealed layer are registered under the layer's ID.
	Objects() *dedup.Store
	// Home is the driver's directory (<graphroot>/cfs).
	Home() string
	// CheckImages verifies every layer's composefs images (see
	// ImageProblem); with repair, damaged caches are removed.
	CheckImages(ctx context.Context, repair bool) ([]ImageProblem, error)
	// FlatImages lists the cached flattened images: the ID of the layer
	// whose chain each flattens, with the bytes it takes (image and
	// digest file).
	FlatImages() (map[string]int64, error)
	// DropFlatImage removes the cached flattened image of layer id (the
	// next mount builds it again) and reports whether there was one.
	// Mounts that use it keep it open: they are not disturbed.
	DropFlatImage(id string) (bool, error)
}

// AsExtension returns the cfs extension of d, or false when d is not the
// cfs driver.
func AsExtension(d graphdriver.Driver) (Extension, bool) {
	e, ok := d.(Extension)
	return e, ok
}

// Objects returns the object store.
func (d *core) Objects() *dedup.Store { return d.objects }

// Home returns the driver's directory.
func (d *core) Home() string { return d.home }

// FlatImages lists the cached flattened images and their sizes.
func (d *core) FlatImages() (map[string]int64, error) {
	entries, err := os.ReadDir(filepath.Join(d.home, "images"))
	if err != nil {
		return nil, fmt.Errorf("cfs: list flattened images: %w", err)
	}
	out := map[string]int64{}
	for _, e := range entries {
		name := e.Name()
		id, _ := strings.CutSuffix(strings.TrimSuffix(name, digestSuffix), ".cfs")
		if strings.HasPrefix(name, ".") || id == name {
			continue
		}
		if info, err := e.Info(); err == nil {
			out[id] += info.Size()
		}
	}
	return out, nil
}

// DropFlatImage removes layer id's cached flattened image. A mount
// holds its image open (the detached EROFS mount), so removing the file
// disturbs no mount.
func (d *core) DropFlatImage(id string) (bool, error) {
	if err := checkID(id); err != nil {
		return false, err
	}
	removed := false
	for _, p := range []string{d.flatImage(id), d.flatImage(id) + digestSuffix} {
		err := os.Remove(p)
		if err == nil {
			removed = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("cfs: drop flattened image of %s: %w", id, err)
		}
	}
	return removed, nil
}
