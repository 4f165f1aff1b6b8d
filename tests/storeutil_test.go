package tests

import (
	"bytes"
	"path/filepath"
	"testing"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"
)

// openStoreOpts opens a c/storage store on driverName in a temporary
// directory, shut down when the test ends.
func openStoreOpts(t *testing.T, driverName string, opts ...string) storage.Store {
	t.Helper()
	dir := t.TempDir()
	store, err := storage.GetStore(types.StoreOptions{
		RunRoot:            filepath.Join(dir, "run"),
		GraphRoot:          filepath.Join(dir, "root"),
		GraphDriverName:    driverName,
		GraphDriverOptions: opts,
	})
	if err != nil {
		t.Fatalf("open %s store: %v", driverName, err)
	}
	t.Cleanup(func() { store.Shutdown(true) })
	return store
}

// openStore opens a store on driverName with no driver options.
func openStore(t *testing.T, driverName string) storage.Store {
	t.Helper()
	return openStoreOpts(t, driverName)
}

// putLayers applies the tars as a chain of layers on parent and returns
// the top layer's ID.
func putLayers(t *testing.T, store storage.Store, parent string, tars ...[]byte) string {
	t.Helper()
	for i, tarball := range tars {
		layer, _, err := store.PutLayer("", parent, nil, "", false, nil, bytes.NewReader(tarball))
		if err != nil {
			t.Fatalf("put layer %d on %q: %v", i, parent, err)
		}
		parent = layer.ID
	}
	return parent
}

// mountNewContainer makes an image of layer, a container of that image,
// and mounts it; it returns the container and its root. unmount (safe to
// call twice; also run at cleanup) unmounts it.
func mountNewContainer(t *testing.T, store storage.Store, layer string) (ctr *storage.Container, root string, unmount func()) {
	t.Helper()
	img, err := store.CreateImage("", nil, layer, "", nil)
	if err != nil {
		t.Fatalf("create image of %s: %v", layer, err)
	}
	if ctr, err = store.CreateContainer("", nil, img.ID, "", "", nil); err != nil {
		t.Fatalf("create container of %s: %v", img.ID, err)
	}
	if root, err = store.Mount(ctr.ID, ""); err != nil {
		t.Fatalf("mount container %s: %v", ctr.ID, err)
	}
	mounted := true
	unmount = func() {
		if mounted {
			mounted = false
			if _, err := store.Unmount(ctr.ID, true); err != nil {
				t.Errorf("unmount container %s: %v", ctr.ID, err)
			}
		}
	}
	t.Cleanup(unmount)
	return ctr, root, unmount
}
