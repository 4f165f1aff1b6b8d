package driver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	graphdriver "go.podman.io/storage/drivers"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/layers/tree"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// A populated cfs store, bind-mounted read-only, serves as an additional
// image store: its layers mount (read-only) and export from the other
// store, containers run on them, a layer still writable there is used
// through a snapshot, objects a new layer keeps from it are imported,
// and nothing is written into it. Once with the read-only store on the
// same file system, once on a loop-mounted XFS.
func TestReadOnlyImageStore(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("same-fs", func(t *testing.T) { testReadOnlyStore(t, t.TempDir()) })
	t.Run("xfs", func(t *testing.T) { testReadOnlyStore(t, loopXFS(t)) })
}

func testReadOnlyStore(t *testing.T, roRoot string) {
	ctx := context.Background()
	big := strings.Repeat("shared content ", 400)
	// The read-only store, populated while writable: a sealed base and a
	// layer left writable, with a file written and one deleted through
	// its upper directory, as a mount would.
	a, err := newCore(filepath.Join(roRoot, Name), filepath.Join(t.TempDir(), "run"), defaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("only in the read-only store ", 300)
	applyLayer(t, a, "base", "", mustTar(t, tarfix.Dir("etc/"), tarfix.File("etc/big", big), tarfix.File("etc/gone", "x"), tarfix.File("small", "s"), tarfix.File("other", other)))
	must(t, a.create(ctx, "leaf", "base", imageLayer))
	upper := a.layers.upperDir("leaf")
	must(t, os.WriteFile(filepath.Join(upper, "leaf-file"), []byte(strings.Repeat("leaf ", 100)), 0o644))
	must(t, os.Mkdir(filepath.Join(upper, "etc"), 0o755))
	must(t, unix.Mknod(filepath.Join(upper, "etc", "gone"), unix.S_IFCHR, 0))
	wantDiff := readDiff(t, a, "base")
	must(t, a.close())

	ro := t.TempDir()
	must(t, unix.Mount(roRoot, ro, "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(ro, unix.MNT_DETACH) })
	must(t, unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))
	untouched := treeState(t, roRoot)

	opts := defaultOptions()
	opts.ImageStores = []string{ro}
	dir := t.TempDir()
	b, err := newCore(filepath.Join(dir, "home", Name), filepath.Join(dir, "run"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.close() })
	if ids, _ := b.layers.list(); len(ids) != 0 || !b.layers.exists("base") || !b.layers.exists("leaf") {
		t.Fatalf("layers: own %q, base known %v, leaf known %v", ids, b.layers.exists("base"), b.layers.exists("leaf"))
	}

	// The read-only layers mount read-only, never writable.
	if _, err := b.get(ctx, "base", mountOptions{}); err == nil || !strings.Contains(err.Error(), "read-only image store") {
		t.Errorf("writable mount of a read-only store's layer: %v", err)
	}
	mnt, err := b.get(ctx, "base", mountOptions{ReadOnly: true})
	must(t, err)
	expectFile(t, filepath.Join(mnt, "etc/big"), big)
	must(t, b.put("base"))
	mnt, err = b.get(ctx, "leaf", mountOptions{ReadOnly: true})
	must(t, err)
	expectFile(t, filepath.Join(mnt, "leaf-file"), strings.Repeat("leaf ", 100))
	if _, err := os.Lstat(filepath.Join(mnt, "etc/gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("etc/gone, whited out in the read-only layer: %v", err)
	}
	must(t, b.put("leaf"))
	if got := readDiff(t, b, "base"); !bytes.Equal(got, wantDiff) {
		t.Errorf("Diff of the read-only layer differs from its own store's (%d and %d bytes)", len(got), len(wantDiff))
	}
	if _, err := b.remove("base"); err == nil {
		t.Error("removed a read-only store's layer")
	}

	// A container on the read-only chain; it changes the metadata of a
	// file whose content only the read-only store has, and is sealed
	// when a layer is created on it: that object is imported.
	must(t, b.create(ctx, "ctr", "leaf", containerLayer))
	mnt, err = b.get(ctx, "ctr", mountOptions{})
	must(t, err)
	expectFile(t, filepath.Join(mnt, "etc/big"), big)
	must(t, os.Chmod(filepath.Join(mnt, "etc/big"), 0o600))
	must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("new"), 0o644))
	must(t, b.put("ctr"))
	must(t, b.create(ctx, "child", "ctr", imageLayer))
	diff, err := b.images.readDiff("ctr")
	must(t, err)
	imported := 0
	must(t, diff.Walk(func(p string, e tree.Dirent) error {
		if e.Node.IsExternal() && !e.HardLink {
			if !b.contents.objects.Has(*e.Node.Digest) {
				t.Errorf("%s: object %s not in the store", p, e.Node.Digest)
			}
			imported++
		}
		return nil
	}))
	if imported == 0 {
		t.Error("the container's diff uses no object of the read-only store")
	}
	mnt, err = b.get(ctx, "child", mountOptions{ReadOnly: true})
	must(t, err)
	expectFile(t, filepath.Join(mnt, "etc/big"), big)
	expectFile(t, filepath.Join(mnt, "leaf-file"), strings.Repeat("leaf ", 100))
	must(t, b.put("child"))
	// A new layer with a content the read-only store has: linked or
	// copied from there, not written from the stream.
	written := func() int64 {
		st, err := b.contents.objects.Stats(ctx)
		must(t, err)
		return st.ByMode[dedup.LinkWritten].Objects
	}
	before := written()
	applyLayer(t, b, "fresh", "", mustTar(t, tarfix.File("copy-of-other", other)))
	if after := written(); after != before {
		t.Errorf("%d objects written from the stream for a content the read-only store has", after-before)
	}
	problems, err := b.checkImages(ctx, CheckRepair)
	if err != nil || len(problems) > 0 {
		t.Errorf("check: %v, %+v", err, problems)
	}
	if after := treeState(t, roRoot); after != untouched {
		t.Errorf("the read-only store changed:\nbefore %s\nafter  %s", untouched, after)
	}

	// The read-only store is updated between runs: a new layer shows,
	// and the snapshot of a layer it no longer has goes.
	must(t, b.close())
	must(t, unix.Unmount(ro, 0))
	a, err = newCore(filepath.Join(roRoot, Name), filepath.Join(t.TempDir(), "run"), defaultOptions())
	must(t, err)
	applyLayer(t, a, "later", "base", mustTar(t, tarfix.File("later", "added later")))
	must(t, a.create(ctx, "leaf2", "base", imageLayer))
	must(t, a.close())
	must(t, unix.Mount(roRoot, ro, "", unix.MS_BIND, ""))
	must(t, unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))
	b, err = newCore(b.home, filepath.Dir(b.run), opts)
	must(t, err)
	t.Cleanup(func() { b.close() })
	mnt, err = b.get(ctx, "leaf2", mountOptions{ReadOnly: true}) // snapshots leaf2
	must(t, err)
	must(t, b.put("leaf2"))
	mnt, err = b.get(ctx, "later", mountOptions{ReadOnly: true})
	must(t, err)
	expectFile(t, filepath.Join(mnt, "later"), "added later")
	must(t, b.put("later"))
	must(t, b.close())
	must(t, unix.Unmount(ro, 0))
	a, err = newCore(filepath.Join(roRoot, Name), filepath.Join(t.TempDir(), "run"), defaultOptions())
	must(t, err)
	cleanup, err := a.remove("leaf2")
	must(t, err)
	must(t, cleanup())
	must(t, a.close())
	// While the read-only store is missing, snapshots stay.
	b, err = newCore(b.home, filepath.Dir(b.run), opts)
	must(t, err)
	must(t, b.close())
	if _, err := os.Lstat(filepath.Join(b.layers.snapshots, "leaf2")); err != nil {
		t.Errorf("snapshot dropped while its store was missing: %v", err)
	}
	must(t, unix.Mount(roRoot, ro, "", unix.MS_BIND, ""))
	must(t, unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))
	b, err = newCore(b.home, filepath.Dir(b.run), opts)
	must(t, err)
	t.Cleanup(func() { b.close() })
	if _, err := os.Lstat(filepath.Join(b.layers.snapshots, "leaf2")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("snapshot of a layer the read-only store removed: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(b.layers.snapshots, "leaf")); err != nil {
		t.Errorf("snapshot of a layer the read-only store still has: %v", err)
	}
}

// readDiff returns layer id's Diff (against its parent) as bytes.
func readDiff(t *testing.T, c *core, id string) []byte {
	t.Helper()
	m, err := c.layers.readMeta(id)
	must(t, err)
	r, err := c.diff(context.Background(), id, m.Parent, nil)
	must(t, err)
	defer r.Close()
	data, err := io.ReadAll(r)
	must(t, err)
	return data
}

func expectFile(t *testing.T, path, want string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || string(data) != want {
		t.Errorf("%s: %d bytes, %v; want %d bytes", path, len(data), err, len(want))
	}
}

// treeState describes every file under root (path, mode, size, mtime):
// equal states mean nothing was written.
func treeState(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	must(t, filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + info.Mode().String() + " " + info.ModTime().String())
		if !info.IsDir() {
			b.WriteString(" " + string(rune('0'+info.Size()%10)))
		}
		b.WriteString("\n")
		return nil
	}))
	return b.String()
}

// loopXFS mounts a fresh XFS file system on a loop device and returns
// its root.
func loopXFS(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "xfs.img")
	must(t, os.WriteFile(img, nil, 0o600))
	must(t, os.Truncate(img, 512<<20))
	if out, err := exec.Command("mkfs.xfs", "-q", img).CombinedOutput(); err != nil {
		if _, lerr := exec.LookPath("mkfs.xfs"); lerr != nil && os.Getenv("CI") != "true" {
			t.Skip("no mkfs.xfs (Debian package xfsprogs)")
		}
		t.Fatalf("mkfs.xfs: %v: %s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", img, err, out)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// A split store ([storage] imagestore): image layers and their objects go
// to the image store's cfs home, container layers to the graph root's;
// containers run on image layers, and the image store works as a store
// of its own.
func TestSplitStore(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	graph, imageStore := filepath.Join(dir, "graph"), filepath.Join(dir, "images")
	drv, err := Init(filepath.Join(graph, Name), graphdriver.Options{RunRoot: filepath.Join(dir, "run"), ImageStore: imageStore})
	must(t, err)
	defer drv.Cleanup()
	must(t, drv.Create("base", "", nil))
	_, err = drv.ApplyDiff("base", graphdriver.ApplyDiffOpts{Diff: bytes.NewReader(mustTar(t, tarfix.File("big", strings.Repeat("image ", 500))))})
	must(t, err)
	must(t, drv.CreateReadWrite("ctr", "base", nil))
	for id, home := range map[string]string{"base": imageStore, "ctr": graph} {
		if _, err := os.Stat(filepath.Join(home, Name, "layers", id, layerMetaFile)); err != nil {
			t.Errorf("layer %s not in %s: %v", id, home, err)
		}
	}
	mnt, err := drv.Get("ctr", graphdriver.MountOpts{})
	must(t, err)
	expectFile(t, filepath.Join(mnt, "big"), strings.Repeat("image ", 500))
	must(t, os.WriteFile(filepath.Join(mnt, "written"), []byte("by the container"), 0o644))
	must(t, drv.Put("ctr"))
	// A commit: a new image layer with the container's diff.
	r, err := drv.Diff("ctr", nil, "base", nil, "")
	must(t, err)
	must(t, drv.Create("commit", "base", nil))
	_, err = drv.ApplyDiff("commit", graphdriver.ApplyDiffOpts{Diff: r})
	r.Close()
	must(t, err)
	must(t, drv.Remove("ctr"))
	must(t, drv.Cleanup())

	// The image store alone, as `--graph <imagestore>` opens it.
	alone, err := Init(filepath.Join(imageStore, Name), graphdriver.Options{RunRoot: filepath.Join(dir, "run2")})
	must(t, err)
	defer alone.Cleanup()
	mnt, err = alone.Get("commit", graphdriver.MountOpts{Options: []string{"ro"}})
	must(t, err)
	expectFile(t, filepath.Join(mnt, "written"), "by the container")
	expectFile(t, filepath.Join(mnt, "big"), strings.Repeat("image ", 500))
	must(t, alone.Put("commit"))
}
