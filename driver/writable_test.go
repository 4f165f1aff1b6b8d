package driver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
)

// TestWritableSealedLayer: a layer mounted without "ro" after ApplyDiff
// is writable, as c/storage's contract has it; what is written is the
// layer's content afterwards, in its mounts, its Diff and the layers
// above it, and survives a reopen. Objects the changes replaced are
// collected.
func TestWritableSealedLayer(t *testing.T) {
	c := newTestCore(t)
	ctx := context.Background()
	big := strings.Repeat("original content of f1 ", 100)
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f1", big), tarfix.File("f2", "f2"), tarfix.Dir("d/"), tarfix.File("d/x", "x"), tarfix.Dir("keep/"), tarfix.File("keep/k", "k")))
	applyLayer(t, c, "kid", "base", mustTar(t, tarfix.File("kidfile", "kid")))
	// The layer above has its flattened image before the change.
	if _, err := c.get(ctx, "kid", mountOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	must(t, c.put("kid"))
	before := objectCount(t, c)

	mnt, err := c.get(ctx, "base", mountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := func(p string) string { return filepath.Join(mnt, p) }
	must(t, os.WriteFile(in("f1"), []byte(strings.Repeat("new content of f1 ", 100)), 0o644))
	must(t, os.WriteFile(in("f3"), []byte("added"), 0o600))
	must(t, os.Remove(in("f2")))
	must(t, os.RemoveAll(in("d")))
	must(t, os.Mkdir(in("d"), 0o755))
	must(t, os.WriteFile(in("d/y"), []byte("y"), 0o644))
	must(t, c.put("base"))

	want := map[string]string{"f1": strings.Repeat("new content of f1 ", 100), "f3": "added", "d/y": "y", "keep/k": "k"}
	gone := []string{"f2", "d/x"}
	check := func(c *core, id string) {
		t.Helper()
		mnt, err := c.get(ctx, id, mountOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.put(id)
		for p, body := range want {
			if got, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(got) != body {
				t.Errorf("%s: %s = %.30q, %v; want %.30q", id, p, got, err, body)
			}
		}
		for _, p := range gone {
			if _, err := os.Lstat(filepath.Join(mnt, p)); !os.IsNotExist(err) {
				t.Errorf("%s: %s still there after its removal (%v)", id, p, err)
			}
		}
	}
	check(c, "base")
	check(c, "kid")

	names := diffNames(t, c, "base")
	for _, p := range []string{"f1", "f3", ".wh.f2", "d/y", "keep/k"} {
		if !slices.Contains(names, p) {
			t.Errorf("Diff of the changed layer lacks %s: %v", p, names)
		}
	}
	if slices.Contains(names, "d/x") || slices.Contains(names, "f2") {
		t.Errorf("Diff of the changed layer still has removed entries: %v", names)
	}
	if _, err := os.Stat(c.layers.upperDir("base")); !os.IsNotExist(err) {
		t.Errorf("the upper directory stays after the fold: %v", err)
	}
	c = reopen(t, c)
	check(c, "base")
	check(c, "kid")
	if problems, err := c.checkImages(ctx, CheckOnly); err != nil || len(problems) > 0 {
		t.Fatalf("image check after the fold: %v %+v", err, problems)
	}
	// f1's old content is used by no layer any more; f1's new content
	// replaced it: the count is unchanged.
	if after := objectCount(t, c); after != before {
		t.Errorf("objects: %d before, %d after replacing one content", before, after)
	}
}

// TestWritableSealedLayerCrash: changes written through a writable mount
// of a sealed layer whose process ends before the last Put are folded in
// by the next open.
func TestWritableSealedLayerCrash(t *testing.T) {
	c := newTestCore(t)
	ctx := context.Background()
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f", "x")))
	mnt, err := c.get(ctx, "base", mountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("written before the crash"), 0o644))
	// close unmounts without the Put that folds.
	must(t, c.close())
	n, err := newCore(c.home, filepath.Dir(c.run), c.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.close() })
	if names := diffNames(t, n, "base"); !slices.Contains(names, "new") {
		t.Fatalf("after reopening, the layer's Diff lacks what was written: %v", names)
	}
}

// TestVolatileMountsAgain: a volatile mount leaves the kernel's
// incompat marker in the work directory; the layer mounts again.
func TestVolatileMountsAgain(t *testing.T) {
	c := newTestCore(t)
	ctx := context.Background()
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f", "x")))
	must(t, c.create(ctx, "ctr", "base", containerLayer))
	for i := 0; i < 3; i++ {
		mnt, err := c.get(ctx, "ctr", mountOptions{Volatile: true})
		if err != nil {
			t.Fatalf("volatile mount %d: %v", i+1, err)
		}
		must(t, os.WriteFile(filepath.Join(mnt, "f"), []byte{byte('a' + i)}, 0o644))
		must(t, c.put("ctr"))
	}
}

func diffNames(t *testing.T, c *core, id string) []string {
	t.Helper()
	m, err := c.layers.readMeta(id)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.diff(context.Background(), id, m.Parent, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hs, err := tarfix.Headers(rc)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range hs {
		names = append(names, strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/"))
	}
	return names
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDropFlatImage: a dropped flattened image is listed no more, its
// mount goes on reading, and the next mount builds it again.
func TestDropFlatImage(t *testing.T) {
	c := newTestCore(t)
	ctx := context.Background()
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f", strings.Repeat("x", 1000))))
	mnt, err := c.get(ctx, "base", mountOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := c.images.list()
	if _, ok := imgs["base"]; err != nil || !ok || len(imgs) != 1 {
		t.Fatalf("FlatImages = %v, %v; want base's", imgs, err)
	}
	if ok, err := c.images.drop("base"); !ok || err != nil {
		t.Fatalf("DropFlatImage = %v, %v", ok, err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || len(got) != 1000 {
		t.Fatalf("the mount after its image was dropped: %v", err)
	}
	must(t, c.put("base"))
	if imgs, _ := c.images.list(); len(imgs) != 0 {
		t.Fatalf("FlatImages after the drop: %v", imgs)
	}
	if _, err := c.get(ctx, "base", mountOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	must(t, c.put("base"))
	if imgs, _ := c.images.list(); len(imgs) != 1 {
		t.Fatalf("the next mount did not build the image again: %v", imgs)
	}
}
