package driver

import (
	"context"

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
	// ImageProblem); with CheckRepair, damaged caches are removed.
	CheckImages(ctx context.Context, mode CheckMode) ([]ImageProblem, error)
	// FlatImages lists the cached flattened images: the ID of the layer
	// whose chain each flattens, with the bytes it takes (image and
	// digest file).
	FlatImages() (map[string]int64, error)
	// DropFlatImage removes the cached flattened image of layer id (the
	// next mount builds it again) and reports whether there was one.
	// Mounts that use it keep it open: they are not disturbed.
	DropFlatImage(id string) (bool, error)
	// ReadOnlyStore returns the graph root of the read-only image store
	// that holds layer id, or "" when the layer is this store's.
	ReadOnlyStore(id string) string
	// LayerObjects lists the objects layer id's own image uses, with
	// their sizes.
	LayerObjects(ctx context.Context, id string) (map[dedup.Digest]int64, error)
	// PrunePartialPullRepo removes the links of the partial-pull
	// repository whose content is gone (collected, or pruned from the
	// host) and returns how many.
	PrunePartialPullRepo() (int, error)
}

// AsExtension returns the cfs extension of d, or false when d is not the
// cfs driver.
func AsExtension(d graphdriver.Driver) (Extension, bool) {
	e, ok := d.(Extension)
	return e, ok
}
