package tests

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestCLIArchives saves an image from a cfs store as docker-archive and
// oci-archive files, removes it, and pulls it back from each archive:
// the image ID (its config digest) survives both round trips.
func TestCLIArchives(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	c := newCLI(t, "cfs")
	id := lastLine(c.ok("pull", "-q", "oci:"+layout+":v1"))
	dir := t.TempDir()
	dockerTar, ociTar := filepath.Join(dir, "docker.tar"), filepath.Join(dir, "oci.tar")
	c.ok("save", "-q", "-o", dockerTar, "localhost/layout:v1")
	c.ok("save", "-q", "--format", "oci-archive", "-o", ociTar, "localhost/layout:v1")
	if _, stderr, code := c.exec("save", "--format", "zip", "-o", dockerTar, "localhost/layout:v1"); code == 0 || !strings.Contains(stderr, "--format") {
		t.Errorf("save --format zip: exit %d: %s", code, stderr)
	}
	for _, src := range []string{"docker-archive:" + dockerTar, "oci-archive:" + ociTar} {
		c.ok("rmi", id)
		if got := lastLine(c.ok("pull", "-q", src)); got != id {
			t.Errorf("pull %s: image ID %s, want %s", src, got, id)
		}
		stdout, stderr, code := c.exec("run", "--rm", id[:12])
		if code != 0 || !strings.Contains(stdout, "args=default-cmd") {
			t.Errorf("run image pulled from %s: exit %d\n%s%s", src, code, stdout, stderr)
		}
	}
	if out := c.ok("images"); !strings.Contains(out, "localhost/oci") && !strings.Contains(out, "localhost/layout") {
		t.Errorf("images after archive pulls:\n%s", out)
	}
}
