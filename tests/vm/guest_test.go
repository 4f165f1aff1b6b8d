package vm

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/driver"
)

// The guest's file systems (mounted by /init).
const (
	verityFS  = "/mnt/verity" // ext4 with the verity feature, on verityDev
	verityDev = "/dev/vda"
	plainFS   = "/mnt/plain" // ext4 without it
)

// guestOnly skips the test outside the VM.
func guestOnly(t *testing.T) {
	t.Helper()
	if os.Getenv(guestEnv) != "1" {
		t.Skip("runs inside the fs-verity VM only (TestVerityVM boots it)")
	}
}

// openStore opens a c/storage store on the cfs driver with the given
// verity mode, graph root under dir; it is shut down when the test ends.
func openStore(t *testing.T, dir, verity string) (storage.Store, driver.Extension) {
	t.Helper()
	store, ext, err := tryStore(t, dir, verity)
	if err != nil {
		t.Fatalf("open a verity=%s store in %s: %v", verity, dir, err)
	}
	return store, ext
}

func tryStore(t *testing.T, dir, verity string) (storage.Store, driver.Extension, error) {
	store, err := storage.GetStore(types.StoreOptions{
		RunRoot:            filepath.Join("/run", strings.ReplaceAll(dir, "/", "_")),
		GraphRoot:          dir,
		GraphDriverName:    "cfs",
		GraphDriverOptions: []string{"verity=" + verity, "host_repo="},
	})
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { store.Shutdown(true) })
	d, err := store.GraphDriver()
	if err != nil {
		return nil, nil, err
	}
	ext, ok := driver.AsExtension(d)
	if !ok {
		return nil, nil, fmt.Errorf("driver %s is not cfs", d.String())
	}
	return store, ext, nil
}

// content is size bytes of random data, the same for the same seed.
func content(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed*7+1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// layerTar is a layer holding files (path → content) and their parent
// directories.
func layerTar(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	mtime := time.Unix(1700000000, 0)
	for _, n := range names {
		for d := path.Dir(n); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// putLayer applies a layer of files on parent and returns its ID.
func putLayer(t *testing.T, store storage.Store, parent string, files map[string][]byte) string {
	t.Helper()
	layer, _, err := store.PutLayer("", parent, nil, "", false, nil, bytes.NewReader(layerTar(t, files)))
	if err != nil {
		t.Fatalf("put layer on %q: %v", parent, err)
	}
	return layer.ID
}

// newImage makes an image of layer.
func newImage(t *testing.T, store storage.Store, layer string) string {
	t.Helper()
	img, err := store.CreateImage("", nil, layer, "", nil)
	if err != nil {
		t.Fatalf("create image of %s: %v", layer, err)
	}
	return img.ID
}

// mountNew creates a container of image and mounts it; the container is
// removed when the test ends.
func mountNew(t *testing.T, store storage.Store, image string) (string, string, error) {
	t.Helper()
	ctr, err := store.CreateContainer("", nil, image, "", "", nil)
	if err != nil {
		t.Fatalf("create container of %s: %v", image, err)
	}
	t.Cleanup(func() {
		store.Unmount(ctr.ID, true)
		store.DeleteContainer(ctr.ID)
	})
	root, err := store.Mount(ctr.ID, "")
	return ctr.ID, root, err
}

// objectOf is the object file holding data.
func objectOf(ext driver.Extension, data []byte) string {
	return ext.Objects().Path(dedup.Digest(fsverity.DigestBytes(data)))
}

// measure returns the kernel's fs-verity digest of the file at p.
func measure(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d, err := fsverity.Measure(f.Fd())
	if err != nil {
		return "", err
	}
	return fsverity.Hex(d), nil
}

// mountOptions returns the super block options of the mount at target
// (from /proc/self/mountinfo).
func mountOptions(t *testing.T, target string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && fields[4] == target {
			return fields[len(fields)-1]
		}
	}
	t.Fatalf("%s is not a mount point", target)
	return ""
}

// enableVerityCopy writes data to a new file in dir with fs-verity and
// returns its path.
func enableVerityCopy(t *testing.T, dir string, data []byte) string {
	t.Helper()
	f, err := os.CreateTemp(dir, ".vmtest-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ro, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := fsverity.Enable(ro.Fd()); err != nil {
		t.Fatalf("enable fs-verity on %s: %v", f.Name(), err)
	}
	return f.Name()
}

// fibmap is FIBMAP: a file's logical block number in, its block number
// on the device out.
const fibmap = 1

// tamperBlock overwrites the file's block'th 4 KiB block on the device
// underneath the file system, then drops the page cache so that the next
// read comes from the device.
func tamperBlock(t *testing.T, p string, block int) {
	t.Helper()
	unix.Sync()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	blk := int32(block)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fibmap, uintptr(unsafe.Pointer(&blk)))
	f.Close()
	if errno != 0 || blk == 0 {
		t.Fatalf("FIBMAP %s block %d: %v (device block %d)", p, block, errno, blk)
	}
	dev, err := os.OpenFile(verityDev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0xa5}, 4096)
	if _, err := dev.WriteAt(junk, int64(blk)*4096); err != nil {
		t.Fatalf("write %s at block %d: %v", verityDev, blk, err)
	}
	if err := errors.Join(dev.Sync(), dev.Close()); err != nil {
		t.Fatal(err)
	}
	dropCaches(t)
	t.Logf("overwrote block %d of %s (device block %d) on %s", block, p, blk, verityDev)
}

func dropCaches(t *testing.T) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
}

// fsckDetail runs object fsck and returns what it says about the object
// of data ("" if nothing).
func fsckDetail(t *testing.T, ext driver.Extension, data []byte) string {
	t.Helper()
	rep, err := ext.Objects().Fsck(context.Background(), dedup.FsckOptions{})
	if err != nil {
		t.Fatalf("fsck: %v", err)
	}
	d := dedup.Digest(fsverity.DigestBytes(data))
	for _, p := range rep.Corrupt {
		if p.Digest == d {
			return p.Detail
		}
	}
	return ""
}

// TestGuestVerityRequire: a store with verity=require on a file system
// with fs-verity. Every object and the flattened image get fs-verity,
// the overlay is mounted with verity=require, and tampering is refused
// by the kernel: a changed block (EIO on read), a replaced object (EIO
// on open), a replaced image (the mount fails).
func TestGuestVerityRequire(t *testing.T) {
	guestOnly(t)
	store, ext := openStore(t, filepath.Join(verityFS, "require"), "require")
	if !ext.Objects().VerityEnabled() {
		t.Fatal("verity=require store: the object store does not enable fs-verity")
	}
	base := map[string][]byte{
		"data/block":    content(1, 256<<10),
		"data/replaced": content(2, 64<<10),
		"data/kept":     content(3, 100<<10),
		"etc/small":     []byte("inline\n"),
	}
	top := map[string][]byte{"data/top": content(4, 8<<10)}
	baseID := putLayer(t, store, "", base)
	topID := putLayer(t, store, baseID, top)
	img := newImage(t, store, topID)
	all := map[string][]byte{}
	for _, m := range []map[string][]byte{base, top} {
		for k, v := range m {
			all[k] = v
		}
	}

	t.Run("every object has fs-verity", func(t *testing.T) {
		n := 0
		err := filepath.WalkDir(ext.Objects().ObjectsDir(), func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			n++
			got, err := measure(p)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if want := filepath.Base(filepath.Dir(p)) + filepath.Base(p); got != want {
				return fmt.Errorf("%s: the kernel measures %s", p, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 4 {
			t.Fatalf("%d objects, want 4", n)
		}
		t.Logf("%d objects, each with fs-verity measuring its name", n)
	})

	_, root, err := mountNew(t, store, img)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Run("overlay has verity=require", func(t *testing.T) {
		if opts := mountOptions(t, root); !strings.Contains(opts, "verity=require") {
			t.Fatalf("overlay options %q lack verity=require", opts)
		}
	})
	flat := filepath.Join(ext.Home(), "images", topID+".cfs")
	t.Run("image has fs-verity matching its recorded digest", func(t *testing.T) {
		got, err := measure(flat)
		if err != nil {
			t.Fatal(err)
		}
		recorded, err := os.ReadFile(flat + ".digest")
		if err != nil {
			t.Fatal(err)
		}
		if got != strings.TrimSpace(string(recorded)) {
			t.Fatalf("kernel measures %s, recorded %s", got, recorded)
		}
	})
	t.Run("contents read right", func(t *testing.T) {
		for name, want := range all {
			if name == "data/replaced" {
				continue // opened first after its object is replaced
			}
			got, err := os.ReadFile(filepath.Join(root, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %d bytes, %v; want %d bytes", name, len(got), err, len(want))
			}
		}
	})
	t.Run("container writes work", func(t *testing.T) {
		// A chmod copies up metadata only (the upper file's metacopy
		// xattr carries the object's digest), an append copies up the
		// data, a new file is the upper's own.
		kept := filepath.Join(root, "data/kept")
		if err := os.Chmod(kept, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(kept); err != nil || !bytes.Equal(got, base["data/kept"]) {
			t.Errorf("data/kept after chmod: %v", err)
		}
		f, err := os.OpenFile(filepath.Join(root, "data/top"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Write([]byte("more"))
		if err := errors.Join(err, f.Close()); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(root, "data/top")); err != nil || !bytes.Equal(got, append(slices.Clone(top["data/top"]), "more"...)) {
			t.Errorf("data/top after append: %v", err)
		}
		if err := os.WriteFile(filepath.Join(root, "new"), []byte("new file"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("tampered block gives EIO", func(t *testing.T) {
		tamperBlock(t, objectOf(ext, base["data/block"]), 1)
		got, err := os.ReadFile(filepath.Join(root, "data/block"))
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("read data/block after its object's block 1 changed: %d bytes, %v; want EIO", len(got), err)
		}
		t.Logf("read data/block: %v", err)
		// The rest still reads.
		if got, err := os.ReadFile(filepath.Join(root, "data/kept")); err != nil || !bytes.Equal(got, base["data/kept"]) {
			t.Errorf("data/kept: %v", err)
		}
		detail := fsckDetail(t, ext, base["data/block"])
		if !strings.Contains(detail, "unreadable") {
			t.Errorf("fsck says %q about the tampered object, want unreadable", detail)
		}
		t.Logf("fsck: %s", detail)
	})

	t.Run("replaced object fails to open", func(t *testing.T) {
		obj := objectOf(ext, base["data/replaced"])
		other := content(99, 64<<10)
		tmp := enableVerityCopy(t, filepath.Dir(obj), other)
		if err := os.Rename(tmp, obj); err != nil {
			t.Fatal(err)
		}
		// The object file itself is sound (fs-verity on, every block
		// matches its own tree): only the image's digest tells.
		if got, err := os.ReadFile(obj); err != nil || !bytes.Equal(got, other) {
			t.Fatalf("read the replacement object: %v", err)
		}
		got, err := os.ReadFile(filepath.Join(root, "data/replaced"))
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("open data/replaced after its object was replaced: %d bytes, %v; want EIO", len(got), err)
		}
		t.Logf("open data/replaced: %v", err)
		detail := fsckDetail(t, ext, base["data/replaced"])
		if !strings.Contains(detail, "kernel fs-verity measures "+fsverity.Hex(fsverity.DigestBytes(other))) {
			t.Errorf("fsck says %q about the replaced object, want the kernel's measurement", detail)
		}
		t.Logf("fsck: %s", detail)
	})

	// A second image, for its flattened image.
	otherID := putLayer(t, store, "", map[string][]byte{"data/other": content(5, 16<<10)})
	otherImg := newImage(t, store, otherID)
	if _, _, err := mountNew(t, store, otherImg); err != nil {
		t.Fatalf("mount the other image: %v", err)
	}
	otherFlat := filepath.Join(ext.Home(), "images", otherID+".cfs")

	t.Run("image without fs-verity gets it once checked", func(t *testing.T) {
		data, err := os.ReadFile(flat)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(flat+".plain", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(flat+".plain", flat); err != nil {
			t.Fatal(err)
		}
		if _, err := measure(flat); !errors.Is(err, fsverity.ErrNotEnabled) {
			t.Fatalf("measure the plain copy: %v", err)
		}
		_, r, err := mountNew(t, store, img)
		if err != nil {
			t.Fatalf("mount with an image without fs-verity: %v", err)
		}
		if got, err := os.ReadFile(filepath.Join(r, "data/kept")); err != nil || !bytes.Equal(got, base["data/kept"]) {
			t.Errorf("data/kept: %v", err)
		}
		if _, err := measure(flat); err != nil {
			t.Errorf("the image has no fs-verity after the mount: %v", err)
		}
	})

	t.Run("replaced image fails to mount", func(t *testing.T) {
		data, err := os.ReadFile(otherFlat)
		if err != nil {
			t.Fatal(err)
		}
		tmp := enableVerityCopy(t, filepath.Dir(flat), data)
		if err := os.Rename(tmp, flat); err != nil {
			t.Fatal(err)
		}
		_, r, err := mountNew(t, store, img)
		if err == nil {
			entries, _ := os.ReadDir(filepath.Join(r, "data"))
			t.Fatalf("a container of %s mounted on another image's bytes (data/ has %d entries)", img, len(entries))
		}
		if !strings.Contains(err.Error(), "measured by the kernel") {
			t.Errorf("mount error %q does not name the kernel's measurement", err)
		}
		t.Logf("mount: %v", err)
	})
}

// TestGuestVerityAutoUnsupported: verity=auto on a file system without
// fs-verity works as verity=none; verity=require there fails clearly.
func TestGuestVerityAutoUnsupported(t *testing.T) {
	guestOnly(t)
	store, ext := openStore(t, filepath.Join(plainFS, "auto"), "auto")
	if ext.Objects().VerityEnabled() {
		t.Fatal("verity=auto enabled fs-verity on a file system without it")
	}
	files := map[string][]byte{"data/a": content(10, 32<<10), "data/b": content(11, 5000)}
	id := putLayer(t, store, "", files)
	_, root, err := mountNew(t, store, newImage(t, store, id))
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(root, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if opts := mountOptions(t, root); strings.Contains(opts, "verity=") {
		t.Errorf("overlay options %q have a verity option", opts)
	}
	if _, err := measure(objectOf(ext, files["data/a"])); !errors.Is(err, fsverity.ErrNotSupported) {
		t.Errorf("measure an object: %v, want not supported", err)
	}
	if rep, err := ext.Objects().Fsck(context.Background(), dedup.FsckOptions{}); err != nil || !rep.Clean() {
		t.Errorf("fsck: %v, %+v", err, rep)
	}
	_, _, err = tryStore(t, filepath.Join(plainFS, "require"), "require")
	if err == nil || !strings.Contains(err.Error(), "fs-verity required but not supported") {
		t.Fatalf("verity=require on a file system without fs-verity: %v", err)
	}
	t.Logf("verity=require here: %v", err)
}

// TestGuestVerityAutoSupported: verity=auto where fs-verity works gives
// objects and images fs-verity, and mounts without requiring digests.
func TestGuestVerityAutoSupported(t *testing.T) {
	guestOnly(t)
	store, ext := openStore(t, filepath.Join(verityFS, "auto"), "auto")
	if !ext.Objects().VerityEnabled() {
		t.Fatal("verity=auto did not enable fs-verity where it is supported")
	}
	files := map[string][]byte{"data/a": content(20, 32<<10)}
	id := putLayer(t, store, "", files)
	_, root, err := mountNew(t, store, newImage(t, store, id))
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "data/a")); err != nil || !bytes.Equal(got, files["data/a"]) {
		t.Errorf("data/a: %v", err)
	}
	if _, err := measure(objectOf(ext, files["data/a"])); err != nil {
		t.Errorf("object: %v", err)
	}
	if _, err := measure(filepath.Join(ext.Home(), "images", id+".cfs")); err != nil {
		t.Errorf("image: %v", err)
	}
	if opts := mountOptions(t, root); strings.Contains(opts, "verity=") {
		t.Errorf("overlay options %q have a verity option", opts)
	}
}

// TestGuestStartTime compares container starts on verity=none and
// verity=require stores in the same boot: create a container, mount it,
// read a 300 KiB file, unmount, delete; medians of interleaved rounds,
// warm and with the page cache dropped before each start. (Under TCG
// every figure is many times the native one; the ratio is the point.)
func TestGuestStartTime(t *testing.T) {
	guestOnly(t)
	files := map[string][]byte{}
	for i := range 200 {
		files[fmt.Sprintf("usr/lib/f%03d", i)] = content(uint64(1000+i), 4096+i*37)
	}
	files["usr/bin/app"] = content(2000, 300<<10)
	upper := map[string][]byte{"etc/conf": content(2001, 2000)}
	modes := []string{"none", "require"}
	type setup struct {
		store storage.Store
		image string
	}
	setups := map[string]setup{}
	for _, mode := range modes {
		store, _ := openStore(t, filepath.Join(verityFS, "start-"+mode), mode)
		base := putLayer(t, store, "", files)
		top := putLayer(t, store, base, upper)
		setups[mode] = setup{store, newImage(t, store, top)}
	}
	start := func(s setup) time.Duration {
		t0 := time.Now()
		ctr, err := s.store.CreateContainer("", nil, s.image, "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		root, err := s.store.Mount(ctr.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.ReadFile(filepath.Join(root, "usr/bin/app")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.store.Unmount(ctr.ID, true); err != nil {
			t.Fatal(err)
		}
		if err := s.store.DeleteContainer(ctr.ID); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	first := map[string]time.Duration{}
	for _, mode := range modes {
		first[mode] = start(setups[mode]) // builds the flattened image
	}
	const rounds = 21
	for _, cold := range []bool{false, true} {
		times := map[string][]time.Duration{}
		for i := range rounds {
			for j := range modes {
				mode := modes[(i+j)%len(modes)]
				if cold {
					dropCaches(t)
				}
				times[mode] = append(times[mode], start(setups[mode]))
			}
		}
		med := map[string]time.Duration{}
		for _, mode := range modes {
			slices.Sort(times[mode])
			med[mode] = times[mode][rounds/2]
		}
		kind := "warm"
		if cold {
			kind = "cold (caches dropped)"
		}
		fmt.Printf("CFS-VM-METRIC start, %s: verity=none %.1f ms, verity=require %.1f ms, ratio %.2f (median of %d)\n",
			kind, ms(med["none"]), ms(med["require"]), float64(med["require"])/float64(med["none"]), rounds)
	}
	fmt.Printf("CFS-VM-METRIC first start (builds the flattened image): verity=none %.1f ms, verity=require %.1f ms\n",
		ms(first["none"]), ms(first["require"]))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
