package driver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
)

// flipByte flips one bit of the file at offset (from the end if < 0).
func flipByte(t *testing.T, path string, offset int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if offset < 0 {
		offset += int64(len(data))
	}
	data[offset] ^= 0x10
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckImagesFindsDamage(t *testing.T) {
	c := newTestCore(t)
	ctx := context.Background()
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f", strings.Repeat("base ", 100))))
	applyLayer(t, c, "top", "base", mustTar(t, tarfix.File("g", strings.Repeat("top ", 100))))
	for _, id := range []string{"base", "top"} {
		if err := c.ensureFlat(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := c.checkImages(ctx, CheckOnly); err != nil || len(p) != 0 {
		t.Fatalf("healthy store: %v %v", p, err)
	}
	flipByte(t, c.layers.diffImage("base"), 1100) // the superblock
	flipByte(t, c.images.path("top"), -1)         // the last byte
	os.Remove(c.images.path("base") + ".digest")  // a lost digest
	problems, err := c.checkImages(ctx, CheckRepair)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]ImageProblem{}
	for _, p := range problems {
		found[p.Path] = p
	}
	if p, ok := found[c.layers.diffImage("base")]; !ok || p.Repaired || !strings.Contains(p.Detail, "pull its image again") {
		t.Errorf("damaged diff image of base: %+v (found %v)", p, ok)
	}
	if p, ok := found[c.images.path("top")]; !ok || !p.Repaired {
		t.Errorf("damaged flattened image of top: %+v (found %v)", p, ok)
	}
	if p, ok := found[c.images.path("base")]; !ok || !strings.Contains(p.Detail, "no recorded digest") {
		t.Errorf("flattened image of base without digest: %+v (found %v)", p, ok)
	}
	if len(problems) != 3 {
		t.Errorf("%d problems, want 3: %+v", len(problems), problems)
	}
	// The damaged cache is not rebuilt from the damaged layer image below
	// it: the mount is refused, naming that layer and image.
	if err := c.ensureFlat(ctx, "top"); !errors.Is(err, ErrImageDamaged) || !strings.Contains(err.Error(), "layer base") ||
		!strings.Contains(err.Error(), c.layers.diffImage("base")) {
		t.Fatalf("flattening over a damaged layer image: %v, want a refusal naming layer base and its image", err)
	}
	if _, err := os.Stat(c.images.path("top")); !os.IsNotExist(err) {
		t.Fatalf("a flattened image was written from a damaged layer image: %v", err)
	}
}

// TestDamagedImagesRefusedAtMount: an image damaged after it was written
// is refused when a mount would use it, in a store opened afterwards,
// and fsck --repair rebuilds a damaged flattened image from the layer
// images.
// A damaged flattened image is a cache written without syncs (verity
// none or auto): the mount builds it again. With verity=require (tested
// in the fs-verity VM) it is refused.
func TestDamagedFlatImageRebuiltAtMount(t *testing.T) {
	c := newTestCore(t)
	ctx := context.Background()
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("motd", "hello")))
	applyLayer(t, c, "top", "base", mustTar(t, tarfix.File("g", strings.Repeat("top ", 100))))
	dir, err := c.get(ctx, "top", mountOptions{ReadOnly: true})
	must(t, err)
	must(t, c.put("top"))
	good, err := os.ReadFile(c.images.path("top"))
	must(t, err)
	for name, damage := range map[string]func(){
		"flipped": func() { flipByte(t, c.images.path("top"), -1) },
		"torn":    func() { must(t, os.Truncate(c.images.path("top"), 0)) },
	} {
		damage()
		c = reopen(t, c)
		dir, err = c.get(ctx, "top", mountOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("%s: mount over a damaged flattened image: %v", name, err)
		}
		expectFile(t, dir+"/motd", "hello")
		must(t, c.put("top"))
		if again, _ := os.ReadFile(c.images.path("top")); !bytes.Equal(again, good) {
			t.Errorf("%s: the rebuilt image differs from the first", name)
		}
	}
}

func TestDamagedImagesRefusedAtMount(t *testing.T) {
	c := newTestCore(t)
	ctx := context.Background()
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("motd", "hello")))
	applyLayer(t, c, "top", "base", mustTar(t, tarfix.File("g", strings.Repeat("top ", 100))))
	if _, err := c.get(ctx, "top", mountOptions{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	must(t, c.put("top"))
	flipByte(t, c.images.path("top"), -1)
	c = reopen(t, c)
	problems, err := c.checkImages(ctx, CheckRepair)
	if err != nil || len(problems) != 1 || !problems[0].Repaired || !strings.Contains(problems[0].Detail, "rebuilt") {
		t.Fatalf("repair: %v %+v", err, problems)
	}
	if err := checkImage(c.images.path("top")); err != nil {
		t.Fatalf("rebuilt flattened image: %v", err)
	}
	if _, err := c.get(ctx, "top", mountOptions{ReadOnly: true}); err != nil {
		t.Fatalf("mount after repair: %v", err)
	}
	must(t, c.put("top"))

	// A damaged layer image with no flattened image cached: no image is
	// built from it.
	os.Remove(c.images.path("top"))
	flipByte(t, c.layers.diffImage("base"), -1)
	c = reopen(t, c)
	if _, err := c.get(ctx, "top", mountOptions{ReadOnly: true}); !errors.Is(err, ErrImageDamaged) || !strings.Contains(err.Error(), "layer base") {
		t.Fatalf("mount over a damaged layer image: %v, want a refusal naming layer base", err)
	}
}
