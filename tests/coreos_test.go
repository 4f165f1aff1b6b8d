package tests

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// coreOSLayout reproduces Fedora CoreOS's mounts on a loop-mounted
// filesystem: the filesystem is mounted at fs, fs/sysroot is bind-mounted
// read-only at sysroot (holding the host's bare ostree repository) and
// fs/var read-write at varDir (holding the graph root). link(2) from
// sysroot to varDir fails with EXDEV although both are one filesystem.
type coreOSLayout struct {
	fs, sysroot, varDir string
	repo                string // sysroot/ostree/repo
	graphRoot           string // varDir/lib/containers/storage
}

// fsRootMount is what stays of the filesystem's own mount once the
// layout is built.
type fsRootMount int

const (
	// rootReadOnly keeps the filesystem's root mounted, read-only, like
	// CoreOS's /sysroot: the helper binds it and makes its bind writable.
	rootReadOnly fsRootMount = iota
	// rootDetached unmounts it: only the two binds remain, and the helper
	// mounts the device again.
	rootDetached
)

// newCoreOSLayout makes the filesystem (fstype "xfs" with reflink=1, or
// "ext4"), commits hostFiles into a bare ostree repository at
// fs/sysroot/ostree/repo and mounts the binds. Every mount and the loop
// device are released in the test's cleanup.
func newCoreOSLayout(t *testing.T, fstype string, root fsRootMount) coreOSLayout {
	t.Helper()
	testutil.RequireRoot(t)
	var dev string
	switch fstype {
	case "xfs":
		dev = testutil.LoopFS(t, 512<<20, "mkfs.xfs", "-q", "-f", "-m", "reflink=1")
	case "ext4":
		dev = testutil.LoopFS(t, 128<<20, "mkfs.ext4", "-q", "-F")
	default:
		t.Fatalf("unknown filesystem %s", fstype)
	}
	dir := t.TempDir()
	l := coreOSLayout{fs: filepath.Join(dir, "fs"), sysroot: filepath.Join(dir, "sysroot"), varDir: filepath.Join(dir, "var")}
	for _, d := range []string{l.fs, l.sysroot, l.varDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Mount(t, dev, l.fs, fstype, 0, "")
	for _, d := range []string{"sysroot/ostree", "var/lib/containers/storage"} {
		if err := os.MkdirAll(filepath.Join(l.fs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	commitHostTree(t, filepath.Join(l.fs, "sysroot/ostree/repo"))
	testutil.Mount(t, filepath.Join(l.fs, "sysroot"), l.sysroot, "", unix.MS_BIND, "")
	testutil.Mount(t, "", l.sysroot, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
	testutil.Mount(t, filepath.Join(l.fs, "var"), l.varDir, "", unix.MS_BIND, "")
	switch root {
	case rootReadOnly:
		testutil.Mount(t, "", l.fs, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
	case rootDetached:
		testutil.Unmount(t, l.fs)
	}
	l.repo = filepath.Join(l.sysroot, "ostree/repo")
	l.graphRoot = filepath.Join(l.varDir, "lib/containers/storage")
	return l
}

// commitHostTree commits hostFiles into a new bare repository at repo
// with Debian's ostree.
func commitHostTree(t *testing.T, repo string) {
	t.Helper()
	testutil.OstreeInitCommit(t, repo, "bare", hostFiles)
}

// requireEXDEV checks that the layout reproduces CoreOS: one st_dev, and
// link(2) from the read-only sysroot to var fails with EXDEV.
func (l coreOSLayout) requireEXDEV(t *testing.T) {
	t.Helper()
	objs, _ := filepath.Glob(filepath.Join(l.repo, "objects", "*", "*.file"))
	if len(objs) == 0 {
		t.Fatal("no host file objects")
	}
	var a, b unix.Stat_t
	if err := unix.Stat(objs[0], &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(l.varDir, &b); err != nil {
		t.Fatal(err)
	}
	if a.Dev != b.Dev {
		t.Fatalf("sysroot and var have different st_dev (%d, %d): not the CoreOS layout", a.Dev, b.Dev)
	}
	err := unix.Link(objs[0], filepath.Join(l.varDir, "probe"))
	if !errors.Is(err, unix.EXDEV) {
		os.Remove(filepath.Join(l.varDir, "probe"))
		t.Fatalf("link(2) from sysroot to var: %v, want EXDEV", err)
	}
}

// coreOSCase is one filesystem and host_link mode, with what must come
// out of it.
type coreOSCase struct {
	fstype string
	root   fsRootMount
	link   string
	// mode is how the two shared contents must be stored: LinkHardlink
	// (the host inode), LinkReflink (shared extents), LinkCopy, or
	// LinkWritten (the stream, where the mode is impossible).
	mode dedup.LinkMode
}

// TestCoreOSHostLinking builds the CoreOS layout on XFS (reflink=1) and
// ext4, pulls a layer sharing two contents with the host through a
// c/storage store whose graph root is under the var bind, and checks per
// host_link mode how the shared objects were stored: auto and hardlink
// give the host's inode on both filesystems (through the namespace
// helper), reflink gives shared extents on XFS and falls back to writing
// the stream on ext4, copy gives private copies. Each time: ostree fsck
// passes, the host objects' metadata and content are unchanged, the
// container reads the layer's files, the staging directory is left
// empty and no helper mount leaked into this namespace.
func TestCoreOSHostLinking(t *testing.T) {
	for _, tc := range []coreOSCase{
		{"xfs", rootReadOnly, "auto", dedup.LinkHardlink},
		{"xfs", rootDetached, "hardlink", dedup.LinkHardlink},
		{"xfs", rootReadOnly, "reflink", dedup.LinkReflink},
		{"xfs", rootReadOnly, "copy", dedup.LinkCopy},
		{"ext4", rootDetached, "auto", dedup.LinkHardlink},
		{"ext4", rootReadOnly, "hardlink", dedup.LinkHardlink},
		{"ext4", rootReadOnly, "reflink", dedup.LinkWritten},
		{"ext4", rootDetached, "copy", dedup.LinkCopy},
	} {
		name := tc.fstype + "/" + tc.link + "/" + map[fsRootMount]string{rootReadOnly: "root-ro", rootDetached: "root-detached"}[tc.root]
		t.Run(name, func(t *testing.T) { runCoreOSCase(t, tc) })
	}
}

func runCoreOSCase(t *testing.T, tc coreOSCase) {
	l := newCoreOSLayout(t, tc.fstype, tc.root)
	l.requireEXDEV(t)
	before := testutil.OstreeObjectState(t, l.repo)
	// Registered before the store's own cleanup, this runs after it: the
	// host must be untouched by everything, shutdown and GC included.
	t.Cleanup(func() {
		testutil.OstreeFsck(t, l.repo)
		if after := testutil.OstreeObjectState(t, l.repo); !mapsEqual(before, after) {
			t.Errorf("host objects changed by the end of the test (store shut down, GC run):\nbefore %v\nafter  %v", before, after)
		}
	})
	store := openCoreOSStore(t, l, tc.link)
	layer, ext := putHostSharingLayer(t, store)
	checkLinkModes(t, ext.Objects(), tc.mode)
	for _, p := range []string{"usr/lib/libshared.so", "usr/bin/tool"} {
		obj := ext.Objects().Path(fsverity.DigestBytes([]byte(hostFiles[p])))
		host := hostObjectWithContent(t, l.repo, hostFiles[p])
		checkObjectStorage(t, p, obj, host, tc)
	}
	checkContainerFiles(t, store, layer.ID)
	testutil.OstreeFsck(t, l.repo)
	if after := testutil.OstreeObjectState(t, l.repo); !mapsEqual(before, after) {
		t.Fatalf("host objects changed:\nbefore %v\nafter  %v", before, after)
	}
	staging := filepath.Join(l.graphRoot, "cfs/hostlink/staging")
	checkNoStagedNames(t, staging)
	checkNoHelperMounts(t)
	if _, err := store.Shutdown(true); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(staging); err == nil && len(ents) != 0 {
		t.Errorf("staging directory %s not empty after shutdown: %v", staging, ents)
	}
}

// openCoreOSStore opens a c/storage store with the cfs driver, its graph
// root under the var bind and the host repository through the read-only
// sysroot bind.
func openCoreOSStore(t *testing.T, l coreOSLayout, link string) storage.Store {
	t.Helper()
	store, err := storage.GetStore(types.StoreOptions{
		RunRoot:            filepath.Join(t.TempDir(), "run"),
		GraphRoot:          l.graphRoot,
		GraphDriverName:    "cfs",
		GraphDriverOptions: []string{"cfs.host_repo=" + l.repo, "cfs.host_link=" + link},
	})
	if err != nil {
		t.Fatalf("open cfs store: %v", err)
	}
	t.Cleanup(func() { store.Shutdown(true) })
	return store
}

// checkLinkModes checks the store's counters: the two shared contents
// stored in mode, the container-only content written.
func checkLinkModes(t *testing.T, objects *dedup.Store, mode dedup.LinkMode) {
	t.Helper()
	st, err := objects.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[dedup.LinkMode]int64{dedup.LinkWritten: 1}
	want[mode] += 2
	for _, m := range []dedup.LinkMode{dedup.LinkWritten, dedup.LinkHardlink, dedup.LinkReflink, dedup.LinkCopy} {
		if got := st.ByMode[m].Objects; got != want[m] {
			t.Errorf("objects stored as %s: %d, want %d (all: %v)", m, got, want[m], st.ByMode)
		}
	}
}

// checkObjectStorage checks how the store's object for the layer file p
// relates to the host object with the same content.
func checkObjectStorage(t *testing.T, p, obj, host string, tc coreOSCase) {
	t.Helper()
	var o, h unix.Stat_t
	if err := unix.Stat(obj, &o); err != nil {
		t.Fatalf("%s: object: %v", p, err)
	}
	if err := unix.Stat(host, &h); err != nil {
		t.Fatal(err)
	}
	sameInode := o.Dev == h.Dev && o.Ino == h.Ino
	if want := tc.mode == dedup.LinkHardlink; sameInode != want {
		t.Errorf("%s: object is the host inode = %v, want %v", p, sameInode, want)
	}
	if tc.fstype != "xfs" || sameInode {
		return
	}
	shared := sharedExtents(t, obj, host)
	if want := tc.mode == dedup.LinkReflink; shared != want {
		t.Errorf("%s: object shares the host object's extents = %v, want %v", p, shared, want)
	}
}

// hostObjectWithContent returns the repository's file object holding
// content.
func hostObjectWithContent(t *testing.T, repo, content string) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(repo, "objects", "*", "*.file"))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil && string(data) == content {
			return p
		}
	}
	t.Fatalf("no host object holds the content (%d bytes)", len(content))
	return ""
}

// checkNoStagedNames checks that no staged host object is left in any
// staging session (a session's helper mount point may remain until the
// store closes).
func checkNoStagedNames(t *testing.T, staging string) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(staging, "*", "o-*"))
	if len(names) != 0 {
		t.Errorf("staged names left: %v", names)
	}
}

// checkNoHelperMounts checks that the helper's mounts stayed in its
// private namespace.
func checkNoHelperMounts(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "/hostlink/staging/") {
		t.Errorf("a staging helper mount is visible in the test's namespace:\n%s", data)
	}
}

// fiemap ioctl (linux/fiemap.h).
const (
	fsIocFiemap        = 0xC020660B
	fiemapFlagSync     = 0x1
	fiemapExtentShared = 0x2000
	fiemapMaxExtents   = 32
)

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

type fiemap struct {
	Start, Length                        uint64
	Flags, MappedExtents, ExtentCount, _ uint32
	Extents                              [fiemapMaxExtents]fiemapExtent
}

// extents returns the file's extents (FIEMAP, after a sync).
func extents(t *testing.T, p string) []fiemapExtent {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fm := fiemap{Length: ^uint64(0), Flags: fiemapFlagSync, ExtentCount: fiemapMaxExtents}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&fm))); errno != 0 {
		t.Fatalf("FIEMAP %s: %v", p, errno)
	}
	return fm.Extents[:fm.MappedExtents]
}

// sharedExtents reports whether a and b have the same physical extents,
// all flagged shared: a reflink.
func sharedExtents(t *testing.T, a, b string) bool {
	t.Helper()
	ea, eb := extents(t, a), extents(t, b)
	if len(ea) == 0 || len(ea) != len(eb) {
		return false
	}
	for i := range ea {
		if ea[i].Physical != eb[i].Physical || ea[i].Length != eb[i].Length ||
			ea[i].Flags&fiemapExtentShared == 0 || eb[i].Flags&fiemapExtentShared == 0 {
			return false
		}
	}
	return true
}
