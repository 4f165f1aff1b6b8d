// Package driver is the containers/storage graph driver "cfs": each layer
// is stored as a composefs image over the shared object store (package
// dedup), layer chains are flattened into one image per mount, and a
// container's root is one EROFS mount plus one overlayfs mount whatever
// the image depth. Importing the package registers the driver with
// go.podman.io/storage.
//
// It is the only package of the project that imports go.podman.io/storage.
package driver
