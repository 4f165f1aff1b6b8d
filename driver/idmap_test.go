package driver

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/idtools"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
)

// TestUpdateLayerIDMap shifts owners by 100000 on a sealed image layer
// (its image is rewritten) and on a writable container layer (chowned
// through its mount), and checks what the mounts show.
func TestUpdateLayerIDMap(t *testing.T) {
	c := newTestCore(t)
	a := newAdapter(graphdriver.ProtoDriver.DeferredRemove, c)
	applyLayer(t, c, "base", "", mustTar(t, tarfix.FileMode("root-file", "r", 0o644, 0, 0)))
	applyLayer(t, c, "top", "base", mustTar(t, tarfix.FileMode("user-file", "u", 0o644, 1000, 1000)))
	shift := idtools.NewIDMappingsFromMaps(
		[]idtools.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		[]idtools.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}})
	identity := &idtools.IDMappings{}
	if err := a.UpdateLayerIDMap("top", identity, shift, ""); err != nil {
		t.Fatalf("sealed layer: %v", err)
	}
	checkOwners(t, c, "top", map[string]uint32{"root-file": 100000, "user-file": 101000})
	if err := c.create(context.Background(), "ctr", "base", containerLayer); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateLayerIDMap("ctr", identity, shift, ""); err != nil {
		t.Fatalf("writable layer: %v", err)
	}
	checkOwners(t, c, "ctr", map[string]uint32{"root-file": 100000})
	// The base layer itself is untouched.
	checkOwners(t, c, "base", map[string]uint32{"root-file": 0})
}

func checkOwners(t *testing.T, c *core, id string, want map[string]uint32) {
	t.Helper()
	mnt, err := c.get(context.Background(), id, mountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.put(id)
	for name, uid := range want {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(mnt, name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != uid || st.Gid != uid {
			t.Errorf("%s in %s: owner %d:%d, want %d:%d", name, id, st.Uid, st.Gid, uid, uid)
		}
	}
	if _, err := os.Stat(mnt); err != nil {
		t.Fatal(err)
	}
}
