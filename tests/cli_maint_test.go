package tests

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cfs-storage/cfs-storage/tests/ocifix"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// dfReport is the part of `df --format json` the tests read.
type dfReport struct {
	Images []struct {
		ID         string
		Names      []string
		Logical    int64
		Unique     int64
		Shared     int64
		HostShared int64
	}
	Total struct {
		Objects         int64
		HostSharedBytes int64
		StoreBytes      int64
		PlainBytes      int64
		FlatImages      int
		FlatImageBytes  int64
	}
}

func (c *cli) df() dfReport {
	c.t.Helper()
	var r dfReport
	out := c.ok("df", "--format", "json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		c.t.Fatalf("df --format json: %v\n%s", err, out)
	}
	return r
}

func (r dfReport) image(t *testing.T, name string) (logical, unique, shared, host int64) {
	t.Helper()
	for _, i := range r.Images {
		for _, n := range i.Names {
			if n == name {
				return i.Logical, i.Unique, i.Shared, i.HostShared
			}
		}
	}
	t.Fatalf("df does not report image %s", name)
	return
}

// objectFiles lists the object store's files under a cfs graph root.
func objectFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && filepath.Base(filepath.Dir(filepath.Dir(p))) == "objects" && len(d.Name()) == 62 {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCLIDfFsckGC checks the shared-store report and the maintenance
// commands on cfs: two images sharing content report shared bytes, an
// object hard-linked from outside the store reports as host-shared,
// a corrupted object makes fsck exit 1 naming the image and container
// that use it, and gc runs after rmi.
func TestCLIDfFsckGC(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	// v2 shares no layer with v1 but repeats a big file's content.
	big := strings.Repeat("shared library bytes ", 400)
	l2, err := tarfix.Tar(tarfix.Dir("lib/"), tarfix.File("lib/libc-copy.so", big), tarfix.File("lib/own.so", strings.Repeat("own ", 20000)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocifix.Write(layout, "v2", imgspecv1.ImageConfig{Cmd: []string{"/bin/hello"}}, []ocifix.Layer{{Tar: l2, Gzip: true}}); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t, "cfs")
	c.ok("pull", "-q", "oci:"+layout+":v1")
	c.ok("pull", "-q", "oci:"+layout+":v2")
	r := c.df()
	_, u1, s1, _ := r.image(t, "localhost/layout:v1")
	logical2, u2, s2, _ := r.image(t, "localhost/layout:v2")
	if s1 != int64(len(big)) || s2 != int64(len(big)) || u1 == 0 || u2 != 80000 || logical2 == 0 {
		t.Errorf("df: v1 unique %d shared %d, v2 unique %d shared %d: want %d shared, v2 unique 80000", u1, s1, u2, s2, len(big))
	}
	if r.Total.StoreBytes == 0 || r.Total.PlainBytes == 0 || r.Total.Objects == 0 {
		t.Errorf("df totals empty: %+v", r.Total)
	}
	if out := c.ok("df"); !strings.Contains(out, "HOST-SHARED") || !strings.Contains(out, "as plain layers") {
		t.Errorf("df table:\n%s", out)
	}

	// A hard link from outside the store: the object is shared with the host.
	objs := objectFiles(t, c.root)
	if len(objs) < 3 {
		t.Fatalf("found %d object files under %s", len(objs), c.root)
	}
	if err := os.Link(objs[0], filepath.Join(t.TempDir(), "host-file")); err != nil {
		t.Fatal(err)
	}
	if r := c.df(); r.Total.HostSharedBytes == 0 {
		t.Errorf("df: an object linked from outside the store is not reported as host-shared: %+v", r.Total)
	}

	c.ok("create", "--name", "victim", "localhost/layout:v2")
	if out := c.ok("fsck"); !strings.Contains(out, "no problems found") {
		t.Errorf("fsck on a good store:\n%s", out)
	}
	// Corrupt v2's own object (same size, other bytes).
	corruptObject(t, objs, 80000)
	stdout, stderr, code := c.exec("fsck")
	if code != 1 || !strings.Contains(stdout, "CORRUPT") || !strings.Contains(stdout, "localhost/layout:v2") ||
		!strings.Contains(stdout, "victim") || !strings.Contains(stderr, "localhost/layout:v2") {
		t.Errorf("fsck on a corrupt object: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout, "localhost/layout:v1") {
		t.Errorf("fsck blames v1, which does not use the corrupt object:\n%s", stdout)
	}
	// --repair quarantines the object; the image still lacks it, so
	// fsck keeps failing until the image is removed or pulled again.
	if stdout, _, code := c.exec("fsck", "--repair"); code != 1 || !strings.Contains(stdout, "quarantined:") {
		t.Errorf("fsck --repair: exit %d, want 1 and a quarantined object\n%s", code, stdout)
	}
	stdout, stderr, code = c.exec("fsck")
	if code != 1 || !strings.Contains(stdout, "MISSING") {
		t.Errorf("fsck after --repair quarantined the object: exit %d, want 1 and MISSING\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	c.ok("rmi", "-f", "localhost/layout:v2")
	if out := c.ok("gc"); !strings.Contains(out, "removed") {
		t.Errorf("gc output:\n%s", out)
	}
	if out := c.ok("fsck"); !strings.Contains(out, "no problems found") {
		t.Errorf("fsck after removing the damaged image:\n%s", out)
	}
}

// TestCLIDfOverlay checks df and fsck report what they can on overlay.
func TestCLIDfOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	c := newCLI(t, "overlay")
	c.ok("pull", "-q", "oci:"+layout+":v1")
	r := c.df()
	if logical, unique, _, _ := r.image(t, "localhost/layout:v1"); logical == 0 || unique != logical {
		t.Errorf("overlay df: logical %d unique %d", logical, unique)
	}
	if out := c.ok("fsck"); !strings.Contains(out, "no problems found") {
		t.Errorf("overlay fsck:\n%s", out)
	}
	c.ok("gc")
}

// corruptObject overwrites the object of the given size with other
// bytes of the same length.
func corruptObject(t *testing.T, objs []string, size int64) {
	t.Helper()
	for _, p := range objs {
		if st, err := os.Stat(p); err == nil && st.Size() == size {
			if err := os.WriteFile(p, []byte(strings.Repeat("b", int(size))), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %d-byte object to corrupt", size)
}

// TestCLIGCFlattenedImages: df counts the flattened image cache; gc
// keeps the images of chains a container stands on or an image tops,
// and drops those of chains nothing uses (here: a layer below the
// image's top mounted on its own, as c/storage's check does).
func TestCLIGCFlattenedImages(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	c := newCLI(t, "cfs")
	c.ok("pull", "-q", "oci:"+layout+":v1")
	c.ok("create", "--name", "keeper", "localhost/layout:v1")
	c.ok("mount", "keeper") // builds the image's flattened image
	c.ok("umount", "keeper")
	store := openStoreAt(t, c.root, c.runroot)
	img, err := store.Image("localhost/layout:v1")
	if err != nil {
		t.Fatal(err)
	}
	top, err := store.Layer(img.TopLayer)
	if err != nil || top.Parent == "" {
		t.Fatalf("image top %v, parent %q: want a layer below it", err, top.Parent)
	}
	if _, err := store.Mount(top.Parent, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Unmount(top.Parent, true); err != nil {
		t.Fatal(err)
	}
	store.Shutdown(true)
	if r := c.df(); r.Total.FlatImages != 2 || r.Total.FlatImageBytes == 0 {
		t.Fatalf("df after two chains mounted: %d flattened images, %d bytes; want 2", r.Total.FlatImages, r.Total.FlatImageBytes)
	}
	if out := c.ok("gc"); !strings.Contains(out, "removed 1 flattened images") {
		t.Fatalf("gc with one chain no image tops:\n%s", out)
	}
	if r := c.df(); r.Total.FlatImages != 1 {
		t.Fatalf("df after gc: %d flattened images, want the container's", r.Total.FlatImages)
	}
	if out := c.ok("gc"); strings.Contains(out, "flattened") {
		t.Fatalf("gc dropped the flattened image a container stands on:\n%s", out)
	}
}
