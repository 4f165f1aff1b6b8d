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
	// ImageProblem); with repair, damaged caches are removed.
	CheckImages(ctx context.Context, repair bool) ([]ImageProblem, error)
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
