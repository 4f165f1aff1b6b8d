package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestCLIFsckDamagedImages damages a layer's composefs image and a
// flattened image in a store the CLI pulled into: fsck exits 1 naming
// the image and container that use the layer, --repair rebuilds the
// flattened cache, and the damaged layer image keeps fsck failing until
// the image is pulled again.
func TestCLIFsckDamagedImages(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	c := newCLI(t, "cfs")
	c.ok("pull", "-q", "oci:"+layout+":v1")
	c.ok("create", "--name", "user-of-v1", "localhost/layout:v1")
	mnt := lastLine(c.ok("mount", "user-of-v1")) // builds the flattened image
	if mnt == "" {
		t.Fatal("mount printed no path")
	}
	c.ok("umount", "user-of-v1")
	if out := c.ok("fsck"); !strings.Contains(out, "no problems found") {
		t.Fatalf("fsck on a good store:\n%s", out)
	}
	flat, _ := filepath.Glob(filepath.Join(c.root, "cfs", "images", "*.cfs"))
	diffs, _ := filepath.Glob(filepath.Join(c.root, "cfs", "layers", "*", "diff.cfs"))
	if len(flat) == 0 || len(diffs) == 0 {
		t.Fatalf("no images to damage: flat %v diff %v", flat, diffs)
	}
	flipLastByte(t, flat[0])
	stdout, _, code := c.exec("fsck", "--repair")
	if code != 0 || !strings.Contains(stdout, "REPAIRED") {
		t.Errorf("fsck --repair on a damaged flattened image: exit %d, want 0 and REPAIRED\n%s", code, stdout)
	}
	flipLastByte(t, diffs[0])
	stdout, stderr, code := c.exec("fsck")
	if code != 1 || !strings.Contains(stdout, "DAMAGED image") || !strings.Contains(stdout, "user-of-v1") ||
		!strings.Contains(stderr, "localhost/layout:v1") {
		t.Errorf("fsck on a damaged layer image: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

func flipLastByte(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
