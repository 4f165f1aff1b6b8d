package driver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
)

// flatChain is a layer chain with what flattening must get right: files
// replaced and deleted, whiteouts, an opaque directory, hard links (one
// broken by a later layer replacing one of its names), symlinks, devices,
// xattrs, modes and owners, inline and external contents.
func flatChain(t *testing.T) [][]byte {
	big := func(s string) string { return strings.Repeat(s, 300) }
	return [][]byte{
		mustTar(t,
			tarfix.Dir("etc/"), tarfix.Dir("usr/"), tarfix.Dir("usr/lib/"), tarfix.Dir("var/"), tarfix.Dir("var/cache/"),
			tarfix.File("etc/hostname", "base\n"), tarfix.FileMode("etc/shadow", "root:*:1::::::\n", 0o640, 0, 42),
			tarfix.File("usr/lib/liba.so", big("liba ")), tarfix.Hardlink("usr/lib/liba.so.1", "usr/lib/liba.so"),
			tarfix.Symlink("usr/lib/libb.so", "liba.so"), tarfix.File("var/cache/old", big("old cache ")),
			tarfix.WithXattrs(tarfix.File("usr/lib/caps", "x"), "security.capability", "\x01\x00\x00\x02"),
			tarfix.Device("dev-null", '3', 1, 3),
		),
		mustTar(t,
			tarfix.Dir("etc/"), tarfix.File("etc/hostname", "second\n"), tarfix.Whiteout("etc/", "shadow"),
			tarfix.Dir("var/"), tarfix.Dir("var/cache/"), tarfix.Opaque("var/cache/"), tarfix.File("var/cache/new", big("new cache ")),
			tarfix.Dir("usr/"), tarfix.Dir("usr/lib/"), tarfix.File("usr/lib/liba.so", big("liba v2 ")),
		),
		mustTar(t,
			tarfix.Dir("opt/"), tarfix.FileMode("opt/tool", big("tool "), 0o4755, 1000, 1000),
			tarfix.Hardlink("opt/tool-link", "opt/tool"), tarfix.Whiteout("", "dev-null"),
		),
		mustTar(t, tarfix.Dir("etc/"), tarfix.File("etc/motd", "hello\n"), tarfix.Whiteout("usr/lib/", "libb.so")),
	}
}

// Flattening a whole chain at once (the first mount of its top layer)
// writes only the top's image, the same byte for byte as flattening it
// one layer at a time (each parent's image written, then read back for
// its child).
func TestFlatChainAtOnceEqualsLayerByLayer(t *testing.T) {
	ctx := context.Background()
	chain := flatChain(t)
	build := func(stepwise bool) [][]byte {
		c := newTestCore(t)
		parent := ""
		var ids []string
		for i, tarball := range chain {
			id := fmt.Sprintf("l%d", i)
			applyLayer(t, c, id, parent, tarball)
			if stepwise {
				if err := c.ensureFlat(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			ids, parent = append(ids, id), id
		}
		if err := c.ensureFlat(ctx, parent); err != nil {
			t.Fatal(err)
		}
		var images [][]byte
		for _, id := range ids {
			data, err := os.ReadFile(c.images.path(id))
			switch {
			case err == nil:
				images = append(images, data)
			case os.IsNotExist(err) && !stepwise && id != parent:
				images = append(images, nil) // flattened once: only the top
			default:
				t.Fatalf("flattened image of %s: %v", id, err)
			}
		}
		return images
	}
	atOnce, stepwise := build(false), build(true)
	top := len(atOnce) - 1
	if !bytes.Equal(atOnce[top], stepwise[top]) {
		t.Errorf("top layer: flattened at once (%d bytes) differs from layer by layer (%d bytes)", len(atOnce[top]), len(stepwise[top]))
	}
	for i := range atOnce[:top] {
		if atOnce[i] != nil {
			t.Errorf("layer %d: mounting the top wrote a flattened image of a layer below it", i)
		}
	}
}

// A store can hold a writable layer below another one (a chain made
// before every parent was sealed at Create): flattening seals it on the
// way and then shows its content.
func TestFlattenSealsUnsealedParent(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t)
	if err := c.create(ctx, "old", "", imageLayer); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.layers.upperDir("old")+"/written", []byte("by a mount\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The child as an older store has it: its parent left unsealed.
	if err := c.layers.createWritable("child", layerMeta{Parent: "old"}, rootAttrs{mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.images.flatTree(ctx, "old"); err == nil {
		t.Fatal("the image cache flattened an unsealed layer")
	}
	dir, err := c.get(ctx, "child", mountOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.put("child")
	if data, err := os.ReadFile(dir + "/written"); err != nil || string(data) != "by a mount\n" {
		t.Fatalf("parent content through the child: %q, %v", data, err)
	}
	if m, err := c.layers.readMeta("old"); err != nil || !m.Sealed {
		t.Fatalf("parent not sealed by the mount: %+v, %v", m, err)
	}
}

// A base layer with nothing for flattening to change gets, as the image
// of its one-layer chain, a hard link to its own diff image (no bytes of
// its own, listed as taking none), and mounts with its content; one with
// a whiteout gets a written image of its own.
func TestFlatBaseLayerLinksItsDiff(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t)
	applyLayer(t, c, "flat", "", flatChain(t)[0])
	applyLayer(t, c, "whiteout", "", mustTar(t, tarfix.Dir("etc/"), tarfix.File("etc/a", "a\n"), tarfix.Whiteout("etc/", "b")))
	same := func(id string) bool {
		var a, b syscall.Stat_t
		if err := syscall.Stat(c.images.path(id), &a); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Stat(c.layers.diffImage(id), &b); err != nil {
			t.Fatal(err)
		}
		return a.Ino == b.Ino && a.Dev == b.Dev
	}
	for _, id := range []string{"flat", "whiteout"} {
		if err := c.ensureFlat(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if !same("flat") {
		t.Error("the flat base layer's image is not its diff image")
	}
	if same("whiteout") {
		t.Error("a base layer with a whiteout shares its diff image as its flattened image")
	}
	sizes, err := c.images.list()
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := sizes["flat"]; !ok || n != 0 {
		t.Errorf("flattened images list the linked one as %d bytes (listed %v)", n, ok)
	}
	dir, err := c.get(ctx, "flat", mountOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.put("flat")
	if data, err := os.ReadFile(dir + "/usr/lib/liba.so.1"); err != nil || !strings.HasPrefix(string(data), "liba ") {
		t.Errorf("usr/lib/liba.so.1 through the mount: %.20q, %v", data, err)
	}
}
