package tests

import (
	"os"
	"path/filepath"
	"testing"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/idtools"
	"go.podman.io/storage/types"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestContainerWithIDMaps is podman's --uidmap/--userns path, both ways
// c/storage has: with shifting (idmapped mounts, where the kernel can),
// the container's layer is created with host IDs and the mount shows
// the owners mapped; with _CONTAINERS_OVERLAY_DISABLE_IDMAP=yes, c/storage
// creates a remapped copy of the image's top layer (UpdateLayerIDMap) and
// mounts the container passing the same maps. Either way the mount must
// show every file owned by the mapped IDs and be writable by the
// container's root, and the image must keep its own owners.
func TestContainerWithIDMaps(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct{ name, disable string }{{"shifting", ""}, {"remapped", "yes"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("_CONTAINERS_OVERLAY_DISABLE_IDMAP", tc.disable)
			containerWithIDMaps(t, tc.disable == "")
		})
	}
}

func containerWithIDMaps(t *testing.T, shifting bool) {
	store := openStore(t, "cfs")
	drv, err := store.GraphDriver()
	if err != nil {
		t.Fatal(err)
	}
	if drv.SupportsShifting(nil, nil) != shifting {
		if shifting {
			t.Skip("no idmapped mounts on this kernel")
		}
		t.Fatal("shifting with _CONTAINERS_OVERLAY_DISABLE_IDMAP=yes")
	}
	top := putLayers(t, store, "",
		mustTarfix(t, tarfix.Dir("etc/"), tarfix.File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
			tarfix.FileMode("home-file", "user", 0o640, 1000, 1001)),
		mustTarfix(t, tarfix.Dir("srv/"), tarfix.FileMode("srv/data", "data", 0o600, 33, 33)))
	img, err := store.CreateImage("", nil, top, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	const base = 100000
	maps := []idtools.IDMap{{ContainerID: 0, HostID: base, Size: 65536}}
	ctr, err := store.CreateContainer("", nil, img.ID, "", "", &storage.ContainerOptions{
		IDMappingOptions: types.IDMappingOptions{UIDMap: maps, GIDMap: maps},
	})
	if err != nil {
		t.Fatalf("create a container with ID maps: %v", err)
	}
	mnt, err := store.Mount(ctr.ID, "")
	if err != nil {
		t.Fatalf("mount a container with ID maps: %v", err)
	}
	defer store.Unmount(ctr.ID, true)
	want := map[string][2]uint32{
		".": {base, base}, "etc": {base, base}, "etc/passwd": {base, base},
		"home-file": {base + 1000, base + 1001}, "srv/data": {base + 33, base + 33},
	}
	checkOwnersAt(t, mnt, want)
	// The container's root is writable by its root.
	if err := os.WriteFile(filepath.Join(mnt, "srv", "new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The image's layers keep their owners: a container without maps
	// sees them as they were pulled.
	plain, err := store.CreateContainer("", nil, img.ID, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	plainMnt, err := store.Mount(plain.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Unmount(plain.ID, true)
	checkOwnersAt(t, plainMnt, map[string][2]uint32{"etc/passwd": {0, 0}, "home-file": {1000, 1001}, "srv/data": {33, 33}})
	// Shifting copies nothing: no remapped top layer for the image.
	layers, err := store.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[bool]int{true: 4, false: 5}[shifting]; len(layers) != want {
		t.Errorf("%d layers (2 of the image, 2 containers' and any remapped copy), want %d", len(layers), want)
	}
}

func checkOwnersAt(t *testing.T, root string, want map[string][2]uint32) {
	t.Helper()
	for p, ids := range want {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != ids[0] || st.Gid != ids[1] {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, ids[0], ids[1])
		}
	}
}

func mustTarfix(t *testing.T, entries ...tarfix.Entry) []byte {
	t.Helper()
	b, err := tarfix.Tar(entries...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
