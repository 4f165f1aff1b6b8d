package driver

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
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
	// The remap is the layer's base: its own changes are its own file.
	cs, err := a.Changes("top", shift, "base", identity, "")
	if got := changesOf(t, cs); err != nil || !slices.Equal(got, []string{"A /user-file"}) {
		t.Fatalf("Changes of the remapped sealed layer = %q, %v", got, err)
	}
	if n, err := a.DiffSize("top", shift, "base", identity, ""); err != nil || n != 1 {
		t.Fatalf("DiffSize of the remapped sealed layer = %d, %v; want 1", n, err)
	}
	// A copy of it (c/storage's mapped top layers) has its base too.
	must(t, a.CreateFromTemplate("copy", "top", shift, "base", identity, nil, false))
	checkOwners(t, c, "copy", map[string]uint32{"root-file": 100000, "user-file": 101000})
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

// shift100000 maps container IDs 0-65535 to host IDs 100000-165535.
var shift100000 = []idtools.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}

func shiftMappings() *idtools.IDMappings {
	return idtools.NewIDMappingsFromMaps(shift100000, shift100000)
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func wantOwner(t *testing.T, p string, uid uint32) {
	t.Helper()
	if st := lstat(t, p); st.Uid != uid || st.Gid != uid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, uid)
	}
}

func changesOf(t *testing.T, cs []archive.Change) []string {
	t.Helper()
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

// diffHeaders reads the tar Diff writes for id against parent.
func diffHeaders(t *testing.T, a graphdriver.Driver, id string, idm *idtools.IDMappings, parent string, pm *idtools.IDMappings) map[string]*tar.Header {
	t.Helper()
	rc, err := a.Diff(id, idm, parent, pm, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hs, err := tarfix.Headers(rc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*tar.Header{}
	for _, h := range hs {
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = h
	}
	return out
}

// newIDTestStore is a core and its adapter, with the base layer:
// root-file 0:0 and its hard link, user-file 1000:1000.
func newIDTestStore(t *testing.T) (*core, graphdriver.Driver) {
	t.Helper()
	c := newTestCore(t)
	a := newAdapter(graphdriver.ProtoDriver.DeferredRemove, c)
	applyLayer(t, c, "base", "", mustTar(t,
		tarfix.FileMode("root-file", strings.Repeat("r", 5000), 0o644, 0, 0),
		tarfix.FileMode("user-file", "u", 0o644, 1000, 1000),
		tarfix.Hardlink("link", "root-file")))
	return c, a
}

// TestRemapThenApplyDiff: a layer remapped for other mappings than its
// parent's keeps an empty upper directory (the remap is its base), a
// mount of it shows the remapped owners with hard links kept, and a
// tar applied while it is mounted shows in that mount, owners mapped;
// Changes, Diff and DiffSize then see only the tar, in container IDs.
func TestRemapThenApplyDiff(t *testing.T) {
	c, a := newIDTestStore(t)
	ctx := context.Background()
	identity := &idtools.IDMappings{}
	must(t, a.Create("mapped", "base", &graphdriver.CreateOpts{IDMappings: shiftMappings()}))
	must(t, a.UpdateLayerIDMap("mapped", identity, shiftMappings(), ""))
	m, err := c.layers.readMeta("mapped")
	if err != nil || !m.Base || m.Sealed {
		t.Fatalf("remapped layer: %+v, %v; want a writable layer with a base", m, err)
	}
	if names, err := readDirNames(c.layers.upperDir("mapped")); err != nil || len(names) != 0 {
		t.Fatalf("upper directory after the remap: %v, %v; want empty", names, err)
	}
	if n, err := a.DiffSize("mapped", shiftMappings(), "base", identity, ""); err != nil || n != 0 {
		t.Fatalf("DiffSize after a pure remap = %d, %v; want 0", n, err)
	}
	if cs, err := a.Changes("mapped", shiftMappings(), "base", identity, ""); err != nil || len(cs) != 0 {
		t.Fatalf("Changes after a pure remap = %v, %v; want none", changesOf(t, cs), err)
	}

	mnt, err := c.get(ctx, "mapped", mountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantOwner(t, mnt, 100000)
	wantOwner(t, filepath.Join(mnt, "root-file"), 100000)
	wantOwner(t, filepath.Join(mnt, "user-file"), 101000)
	ino := lstat(t, filepath.Join(mnt, "root-file")).Ino
	if lstat(t, filepath.Join(mnt, "link")).Ino != ino {
		t.Fatal("the hard link is two inodes in the remapped layer")
	}
	n, err := a.ApplyDiff("mapped", graphdriver.ApplyDiffOpts{
		Diff:     bytes.NewReader(mustTar(t, tarfix.FileMode("new", "new!", 0o600, 0, 0), tarfix.FileMode("sub/x", "x", 0o644, 7, 7))),
		Mappings: shiftMappings(),
	})
	if err != nil {
		t.Fatalf("apply diff onto the mounted, remapped layer: %v", err)
	}
	if n != 5 {
		t.Errorf("ApplyDiff size %d, want 5", n)
	}
	// The mount made before shows the tar, with host IDs.
	wantOwner(t, filepath.Join(mnt, "new"), 100000)
	wantOwner(t, filepath.Join(mnt, "sub/x"), 100007)
	if lstat(t, filepath.Join(mnt, "link")).Ino != ino {
		t.Fatal("the hard link is two inodes after the apply")
	}
	must(t, c.put("mapped"))

	checkOwners(t, c, "mapped", map[string]uint32{"new": 100000, "sub/x": 100007, "root-file": 100000, "user-file": 101000})
	cs, err := a.Changes("mapped", shiftMappings(), "base", identity, "")
	if got := changesOf(t, cs); err != nil || !slices.Equal(got, []string{"A /new", "A /sub", "A /sub/x"}) {
		t.Fatalf("Changes = %q, %v; want the tar's entries only", got, err)
	}
	hs := diffHeaders(t, a, "mapped", shiftMappings(), "base", identity)
	if len(hs) != 3 || hs["new"] == nil || hs["new"].Uid != 0 || hs["sub/x"] == nil || hs["sub/x"].Uid != 7 || hs["sub/x"].Gid != 7 {
		t.Fatalf("Diff entries %v; want new (0:0), sub, sub/x (7:7)", hs)
	}
	if n, err := a.DiffSize("mapped", shiftMappings(), "base", identity, ""); err != nil || n != 5 {
		t.Fatalf("DiffSize = %d, %v; want 5", n, err)
	}
	// A child with the parent's (host) mappings again.
	must(t, a.Create("back", "mapped", nil))
	must(t, a.UpdateLayerIDMap("back", shiftMappings(), identity, ""))
	checkOwners(t, c, "back", map[string]uint32{"new": 0, "sub/x": 7, "root-file": 0, "user-file": 1000})
}

// TestApplyDiffOntoWrittenLayer: a tar applied to a writable layer that
// has content already (written through a mount) lands over it.
func TestApplyDiffOntoWrittenLayer(t *testing.T) {
	c, a := newIDTestStore(t)
	ctx := context.Background()
	must(t, c.create(ctx, "w", "base", imageLayer))
	mnt, err := c.get(ctx, "w", mountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "written"), []byte("w"), 0o644))
	must(t, c.put("w"))
	if _, err := a.ApplyDiff("w", graphdriver.ApplyDiffOpts{Diff: bytes.NewReader(mustTar(t, tarfix.File("applied", "a"), tarfix.Whiteout("", "root-file")))}); err != nil {
		t.Fatal(err)
	}
	names := diffNames(t, c, "w")
	slices.Sort(names)
	if !slices.Equal(names, []string{".wh.root-file", "applied", "written"}) {
		t.Fatalf("diff of the layer: %q", names)
	}
}

// TestCreateWithMappingsOwnsRoot: a layer created with ID mappings and
// no parent has its root owned by the mapped root, as with overlay.
func TestCreateWithMappingsOwnsRoot(t *testing.T) {
	c := newTestCore(t)
	a := newAdapter(graphdriver.ProtoDriver.DeferredRemove, c)
	must(t, a.Create("l", "", &graphdriver.CreateOpts{IDMappings: shiftMappings()}))
	wantOwner(t, c.layers.upperDir("l"), 100000)
}

// TestRemapperAsChownPathByMaps: an unmapped 0:0 is taken as container
// root, an unmapped other ID fails, a container ID the new mappings lack
// becomes the overflow ID.
func TestRemapperAsChownPathByMaps(t *testing.T) {
	small := []idtools.IDMap{{ContainerID: 0, HostID: 200000, Size: 10}}
	f := remapper(shiftMappings(), idtools.NewIDMappingsFromMaps(small, small))
	for _, tc := range []struct {
		in, want uint32
		fails    bool
	}{{0, 200000, false}, {100005, 200005, false}, {100020, 65534, false}, {5, 0, true}} {
		u, g, err := f(tc.in, tc.in)
		if (err != nil) != tc.fails || (!tc.fails && (u != tc.want || g != tc.want)) {
			t.Errorf("remap %d = %d:%d, %v; want %d (fails: %v)", tc.in, u, g, err, tc.want, tc.fails)
		}
	}
}

// requireShifting skips where the kernel cannot idmap an EROFS mount
// under overlay.
func requireShifting(t *testing.T, c *core) {
	t.Helper()
	if err := c.idmappedMounts(); err != nil {
		t.Skipf("no idmapped mounts: %v", err)
	}
}

func statusLine(a graphdriver.Driver, key string) string {
	for _, kv := range a.Status() {
		if kv[0] == key {
			return kv[1]
		}
	}
	return ""
}

// TestShiftedMount: with shifting, a container layer mounted with maps
// shows the lower layers' owners mapped and its root owned by the mapped
// root; what is written lands in the upper directory with host IDs;
// Changes and Diff read them back through the layer's mappings, so a
// copy-up that changes nothing the container sees is no change; a mount
// without maps shows the owners as stored.
func TestShiftedMount(t *testing.T) {
	t.Setenv(disableIDMapEnv, "")
	c, a := newIDTestStore(t)
	requireShifting(t, c)
	if !a.SupportsShifting(shift100000, shift100000) || statusLine(a, "Supports shifting") != "true" || statusLine(a, "ID-mapped layers") != "idmapped mounts" {
		t.Fatalf("shifting supported, yet SupportsShifting %v, status %q, %q", a.SupportsShifting(nil, nil), statusLine(a, "Supports shifting"), statusLine(a, "ID-mapped layers"))
	}
	identity := &idtools.IDMappings{}
	must(t, a.CreateReadWrite("ctr", "base", &graphdriver.CreateOpts{IDMappings: identity}))
	mnt, err := a.Get("ctr", graphdriver.MountOpts{UidMaps: shift100000, GidMaps: shift100000})
	if err != nil {
		t.Fatal(err)
	}
	upper := c.layers.upperDir("ctr")
	wantOwner(t, mnt, 100000)
	wantOwner(t, upper, 100000)
	wantOwner(t, filepath.Join(mnt, "root-file"), 100000)
	wantOwner(t, filepath.Join(mnt, "user-file"), 101000)
	if lstat(t, filepath.Join(mnt, "link")).Ino != lstat(t, filepath.Join(mnt, "root-file")).Ino {
		t.Error("the hard link is two inodes in the shifted mount")
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "root-file")); err != nil || len(got) != 5000 {
		t.Fatalf("read a file from the object store through the shifted mount: %d bytes, %v", len(got), err)
	}
	// Copy-ups: one to the owner it shows already, one to another owner.
	must(t, os.Lchown(filepath.Join(mnt, "root-file"), 100000, 100000))
	must(t, os.Lchown(filepath.Join(mnt, "user-file"), 100005, 100005))
	must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("n"), 0o644))
	must(t, os.Lchown(filepath.Join(mnt, "new"), 100001, 100001))
	wantOwner(t, filepath.Join(upper, "root-file"), 100000)
	wantOwner(t, filepath.Join(upper, "user-file"), 100005)
	wantOwner(t, filepath.Join(upper, "new"), 100001)
	must(t, a.Put("ctr"))

	cs, err := a.Changes("ctr", shiftMappings(), "base", identity, "")
	if got := changesOf(t, cs); err != nil || !slices.Equal(got, []string{"A /new", "C /user-file"}) {
		t.Fatalf("Changes = %q, %v; want /new added, /user-file changed, not /root-file", got, err)
	}
	hs := diffHeaders(t, a, "ctr", shiftMappings(), "base", identity)
	if hs["new"] == nil || hs["new"].Uid != 1 || hs["user-file"] == nil || hs["user-file"].Uid != 5 {
		t.Fatalf("Diff entries %v; want new 1:1 and user-file 5:5 (container IDs)", hs)
	}
	// No maps: the owners as stored.
	mnt, err = a.Get("ctr", graphdriver.MountOpts{})
	if err != nil {
		t.Fatal(err)
	}
	wantOwner(t, filepath.Join(mnt, "user-file"), 100005)
	must(t, a.Put("ctr"))
	must(t, a.CreateReadWrite("host", "base", nil))
	mnt, err = a.Get("host", graphdriver.MountOpts{})
	if err != nil {
		t.Fatal(err)
	}
	wantOwner(t, mnt, 0)
	wantOwner(t, filepath.Join(mnt, "root-file"), 0)
	wantOwner(t, filepath.Join(mnt, "user-file"), 1000)
	must(t, a.Put("host"))
	// A read-only mount of the image layer itself, shifted.
	mnt, err = a.Get("base", graphdriver.MountOpts{Options: []string{"ro"}, UidMaps: shift100000, GidMaps: shift100000})
	if err != nil {
		t.Fatal(err)
	}
	wantOwner(t, filepath.Join(mnt, "user-file"), 101000)
	must(t, a.Put("base"))
}

// TestShiftingDisabledByEnv: _CONTAINERS_OVERLAY_DISABLE_IDMAP=yes turns
// shifting off (as for overlay): SupportsShifting and the status say so,
// and a mount given maps shows the owners as stored.
func TestShiftingDisabledByEnv(t *testing.T) {
	t.Setenv(disableIDMapEnv, "yes")
	c, a := newIDTestStore(t)
	if a.SupportsShifting(shift100000, shift100000) {
		t.Fatal("SupportsShifting with " + disableIDMapEnv + "=yes")
	}
	if s := statusLine(a, "Supports shifting"); s != "false" {
		t.Fatalf("status: Supports shifting: %q", s)
	}
	if s := statusLine(a, "ID-mapped layers"); !strings.Contains(s, disableIDMapEnv) {
		t.Fatalf("status: ID-mapped layers: %q; want the variable named", s)
	}
	must(t, c.create(context.Background(), "ctr", "base", containerLayer))
	mnt, err := a.Get("ctr", graphdriver.MountOpts{UidMaps: shift100000, GidMaps: shift100000})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Put("ctr")
	wantOwner(t, filepath.Join(mnt, "root-file"), 0)
}

// TestCheckBaseImage: fsck checks a remapped layer's base image.
func TestCheckBaseImage(t *testing.T) {
	c, a := newIDTestStore(t)
	must(t, a.Create("mapped", "base", nil))
	must(t, a.UpdateLayerIDMap("mapped", &idtools.IDMappings{}, shiftMappings(), ""))
	if ps, err := c.checkImages(context.Background(), CheckOnly); err != nil || len(ps) != 0 {
		t.Fatalf("check of a sound store: %v, %v", ps, err)
	}
	// A damaged copy in its place (the image may have fs-verity, which
	// forbids writing to it).
	data, err := os.ReadFile(c.layers.baseImage("mapped"))
	must(t, err)
	data[1100] ^= 0xff
	must(t, os.Remove(c.layers.baseImage("mapped")))
	must(t, os.WriteFile(c.layers.baseImage("mapped"), data, 0o600))
	ps, err := c.checkImages(context.Background(), CheckOnly)
	if err != nil || len(ps) != 1 || ps[0].Path != c.layers.baseImage("mapped") {
		t.Fatalf("check with a damaged base image: %+v, %v", ps, err)
	}
}
