package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cfs-storage/cfs-storage/tests/ocifix"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestCLIVfs runs the same commands on c/storage's vfs driver. vfs
// rejects the test image's directory-replaced-by-a-file layer (it
// unlinks the whiteout's path under the new file), so this image is a
// plain two-layer one.
func TestCLIVfs(t *testing.T) {
	testutil.RequireRoot(t)
	_, hello := buildBinaries(t)
	helloBytes, err := os.ReadFile(hello)
	if err != nil {
		t.Fatal(err)
	}
	base, err := tarfix.Tar(tarfix.Dir("bin/"), tarfix.FileMode("bin/hello", string(helloBytes), 0o755, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	top, err := tarfix.Tar(tarfix.Dir("etc/"), tarfix.File("etc/motd", "on vfs\n"))
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "plain")
	if _, err := ocifix.Write(layout, "v1", imgspecv1.ImageConfig{Entrypoint: []string{"/bin/hello"}},
		[]ocifix.Layer{{Tar: base, Gzip: true}, {Tar: top}}); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t, "vfs")
	id := lastLine(c.ok("pull", "-q", "oci:"+layout+":v1"))
	stdout, stderr, code := c.exec("run", "--rm", "--runtime", "runc", "plain:v1", "cat=/etc/motd", "exit=2")
	if code != 2 || !strings.Contains(stdout, "on vfs") {
		t.Errorf("vfs run: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if logical, _, _, _ := c.df().image(t, "localhost/plain:v1"); logical == 0 {
		t.Errorf("vfs df: image size 0")
	}
	c.ok("rmi", id)
}
