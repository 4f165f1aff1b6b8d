package driver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	graphdriver "go.podman.io/storage/drivers"

	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

func newTestCore(t *testing.T) *core {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	c, err := newCore(filepath.Join(dir, "home"), filepath.Join(dir, "run"), defaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close() })
	return c
}

func mustTar(t *testing.T, entries ...tarfix.Entry) []byte {
	t.Helper()
	b, err := tarfix.Tar(entries...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func applyLayer(t *testing.T, c *core, id, parent string, tarball []byte) {
	t.Helper()
	ctx := context.Background()
	if err := c.create(ctx, id, parent, imageLayer); err != nil {
		t.Fatal(err)
	}
	if _, err := c.applyDiff(ctx, id, bytes.NewReader(tarball), nil); err != nil {
		t.Fatalf("apply %s: %v", id, err)
	}
}

func objectCount(t *testing.T, c *core) int64 {
	t.Helper()
	st, err := c.contents.objects.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Objects
}

// gc closes the core (which collects after removals) and reopens it.
func reopen(t *testing.T, c *core) *core {
	t.Helper()
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	n, err := newCore(c.home, filepath.Dir(c.run), c.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.close() })
	return n
}

func TestContentStoredOnceAndCollected(t *testing.T) {
	c := newTestCore(t)
	big := strings.Repeat("the same shared content ", 100)
	applyLayer(t, c, "a", "", mustTar(t, tarfix.File("lib/x.so", big), tarfix.File("only-a", big+"a")))
	applyLayer(t, c, "b", "", mustTar(t, tarfix.File("usr/lib/x.so", big)))
	if n := objectCount(t, c); n != 2 {
		t.Fatalf("%d objects for 2 distinct contents", n)
	}
	if err := removeLayer(c, "a"); err != nil {
		t.Fatal(err)
	}
	c = reopen(t, c)
	if n := objectCount(t, c); n != 1 {
		t.Fatalf("after removing a: %d objects, want the one b still uses", n)
	}
	mnt, err := c.get(context.Background(), "b", mountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "usr/lib/x.so"))
	if err != nil || string(got) != big {
		t.Fatalf("b's file after GC: %v (%d bytes)", err, len(got))
	}
	if err := c.put("b"); err != nil {
		t.Fatal(err)
	}
	if err := removeLayer(c, "b"); err != nil {
		t.Fatal(err)
	}
	c = reopen(t, c)
	if n := objectCount(t, c); n != 0 {
		t.Fatalf("after removing every layer: %d objects left", n)
	}
}

func removeLayer(c *core, id string) error {
	cleanup, err := c.remove(id)
	if cerr := cleanup(); err == nil {
		err = cerr
	}
	return err
}

// A hostile tar fails with a clear error; the layer stays empty and
// writable, nothing lands outside the store, and the contents read
// before the bad entry are collected.
func TestApplyDiffHostileTar(t *testing.T) {
	c := newTestCore(t)
	outside := t.TempDir()
	evil := mustTar(t,
		tarfix.File("ok", strings.Repeat("fine content ", 50)),
		tarfix.File("../../../../../../.."+outside+"/escaped", "gotcha"),
	)
	if err := c.create(context.Background(), "evil", "", imageLayer); err != nil {
		t.Fatal(err)
	}
	_, err := c.applyDiff(context.Background(), "evil", bytes.NewReader(evil), nil)
	if !errors.Is(err, layers.ErrInvalidTar) || !strings.Contains(err.Error(), "climbs above") {
		t.Fatalf("hostile tar: err = %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("hostile tar wrote outside the store: %v", entries)
	}
	m, err := c.layers.readMeta("evil")
	if err != nil || m.Sealed {
		t.Fatalf("layer after a failed apply: sealed=%v err=%v", m.Sealed, err)
	}
	if _, err := c.contents.objects.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := objectCount(t, c); n != 0 {
		t.Fatalf("%d objects of the failed apply survived GC", n)
	}
	// The layer is still usable for a good tar.
	if _, err := c.applyDiff(context.Background(), "evil", bytes.NewReader(mustTar(t, tarfix.File("good", "g"))), nil); err != nil {
		t.Fatalf("apply after a failed apply: %v", err)
	}
}

// A container on a deep image is one EROFS mount (detached) and one
// overlay mount.
func TestOneMountPerContainer(t *testing.T) {
	c := newTestCore(t)
	parent := ""
	for i := 0; i < 20; i++ {
		id := "l" + string(rune('a'+i))
		applyLayer(t, c, id, parent, mustTar(t, tarfix.File(id, strings.Repeat(id, 100))))
		parent = id
	}
	ctx := context.Background()
	if err := c.create(ctx, "ctr", parent, containerLayer); err != nil {
		t.Fatal(err)
	}
	mnt, err := c.get(ctx, "ctr", mountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.put("ctr")
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, c.run) {
			ours = append(ours, line)
		}
	}
	// The EROFS mount is detached: the overlay is the one mount in the
	// table, its lower the EROFS mount (by descriptor) and the objects.
	if len(ours) != 1 || !strings.Contains(ours[0], " - overlay ") || !strings.Contains(ours[0], "lowerdir+=/proc/self/fd/") ||
		!strings.Contains(ours[0], "datadir+="+c.contents.objects.ObjectsDir()) {
		t.Fatalf("container on 20 layers: want one overlay over a detached EROFS mount and the objects, got:\n%s", strings.Join(ours, "\n"))
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, " - erofs ") && (strings.Contains(line, c.home) || strings.Contains(line, c.run)) {
			t.Fatalf("an EROFS mount of ours is in the mount table: %s", line)
		}
	}
	for i := 0; i < 20; i++ {
		name := "l" + string(rune('a'+i))
		if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || string(got) != strings.Repeat(name, 100) {
			t.Fatalf("%s through the container: %v", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "la"), []byte("changed in the container"), 0o644); err != nil {
		t.Fatalf("write in the container: %v", err)
	}
}

func TestNestedGetPut(t *testing.T) {
	c := newTestCore(t)
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f", "x")))
	ctx := context.Background()
	a, err := c.get(ctx, "base", mountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.get(ctx, "base", mountOptions{})
	if err != nil || a != b {
		t.Fatalf("second get: %q %v", b, err)
	}
	if err := c.put("base"); err != nil {
		t.Fatal(err)
	}
	if !isMountPoint(a) {
		t.Fatal("first put unmounted a layer that had two gets")
	}
	if err := c.put("base"); err != nil {
		t.Fatal(err)
	}
	if isMountPoint(a) {
		t.Fatal("layer still mounted after the last put")
	}
}

func TestAsExtension(t *testing.T) {
	c := newTestCore(t)
	var drv graphdriver.Driver = newAdapter(graphdriver.ProtoDriver.DeferredRemove, c)
	ext, ok := AsExtension(drv)
	if !ok || ext.Objects() != c.contents.objects || ext.Home() != c.home {
		t.Fatalf("AsExtension(cfs driver) = %v, %v", ext, ok)
	}
}

func TestStatusReportsObjects(t *testing.T) {
	c := newTestCore(t)
	big := strings.Repeat("status ", 100)
	applyLayer(t, c, "a", "", mustTar(t, tarfix.File("x", big)))
	applyLayer(t, c, "b", "", mustTar(t, tarfix.File("y", big)))
	got := map[string]string{}
	for _, kv := range c.status(context.Background()) {
		got[kv[0]] = kv[1]
	}
	if got["Objects"] != "1" || got["Deduplicated inserts"] != "1" || got["Layers with objects"] != "2" {
		t.Fatalf("status after two layers sharing one content: %v", got)
	}
}

// Start-up recovery removes temporary files only when no other process
// has the driver open: they may be that process's work in progress.
func TestRecoveryLeavesOthersWorkInProgress(t *testing.T) {
	first := newTestCore(t)
	inProgress := filepath.Join(first.home, "layers", ".new-in-progress")
	if err := os.Mkdir(inProgress, 0o700); err != nil {
		t.Fatal(err)
	}
	second, err := newCore(first.home, filepath.Dir(first.run), first.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inProgress); err != nil {
		t.Fatalf("a second process's start-up removed the first's work in progress: %v", err)
	}
	second.close()
	first.close()
	third, err := newCore(first.home, filepath.Dir(first.run), first.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer third.close()
	if _, err := os.Stat(inProgress); !os.IsNotExist(err) {
		t.Fatalf("a solitary start-up left a leftover temporary directory: %v", err)
	}
}

// Removing a layer that is gone, or whose layer.json a crash left empty,
// succeeds: c/storage must be able to clean up after a crash.
func TestRemoveMissingOrDamagedLayer(t *testing.T) {
	c := newTestCore(t)
	if err := removeLayer(c, "never-existed"); err != nil {
		t.Fatalf("remove of a missing layer: %v", err)
	}
	if err := c.create(context.Background(), "damaged", "", containerLayer); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.layers.path("damaged"), layerMetaFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeLayer(c, "damaged"); err != nil {
		t.Fatalf("remove of a layer with an empty layer.json: %v", err)
	}
	if _, err := os.Stat(c.layers.path("damaged")); !os.IsNotExist(err) {
		t.Fatalf("damaged layer still there: %v", err)
	}
}
