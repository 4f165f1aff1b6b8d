package tests

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cfs-storage/cfs-storage/tests/ocifix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestCLIPullRunPush drives podman's storage path end to end through
// the cfs-storage binary on the cfs driver: pull a real OCI image from
// an oci: layout, run its static binary with crun and with runc (output,
// user, env, workdir and exit codes pass through), push it back to an
// OCI layout and check the layer digests survived the round trip.
func TestCLIPullRunPush(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "crun")
	testutil.RequireTool(t, "runc")
	layout := filepath.Join(t.TempDir(), "layout")
	src := testImage(t, layout)
	c := newCLI(t, "cfs")

	id := lastLine(c.ok("pull", "oci:"+layout+":v1"))
	if !idPattern.MatchString(id) {
		t.Fatalf("pull: last line %q is not an image ID", id)
	}
	if out := c.ok("images"); !strings.Contains(out, "localhost/layout") || !strings.Contains(out, id[:12]) {
		t.Errorf("images does not list the pulled image:\n%s", out)
	}

	for _, rt := range []string{"crun", "runc"} {
		stdout, stderr, code := c.exec("run", "--rm", "--runtime", rt, "localhost/layout:v1")
		want := "args=default-cmd cwd=/home/app uid=1000 gid=1000 greeting=hi from the image"
		if code != 0 || !strings.Contains(stdout, want) || !strings.Contains(stderr, "hello on stderr") {
			t.Errorf("%s: run: exit %d\nstdout: %s\nstderr: %s\nwant stdout %q", rt, code, stdout, stderr, want)
		}
		stdout, stderr, code = c.exec("run", "--rm", "--runtime", rt, id[:12], "cat=/etc/passwd", "exit=7")
		// /etc/passwd comes from the last layer, which added the app user.
		if code != 7 || !strings.Contains(stdout, "app:x:1000:1000::/home/app") {
			t.Errorf("%s: run cat=/etc/passwd exit=7: exit %d\nstdout: %s\nstderr: %s", rt, code, stdout, stderr)
		}
	}
	// The host's resolv.conf is bound read-only (the host network is shared).
	if want, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		stdout, stderr, code := c.exec("run", "--rm", id[:12], "cat=/etc/resolv.conf")
		if code != 0 || !strings.Contains(stdout, string(want)) {
			t.Errorf("run cat=/etc/resolv.conf: exit %d, want the host's\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
	}
	if out := c.ok("ps", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("run --rm left containers behind: %s", out)
	}

	// Push without compression: every layer comes back as its original
	// uncompressed tar, so uncompressed layers keep their digests and
	// every layer keeps its diff ID.
	plain := filepath.Join(t.TempDir(), "plain")
	c.ok("push", "--disable-compression", "localhost/layout:v1", "oci:"+plain+":pushed")
	man, cfg, err := ocifix.ReadManifest(plain, "pushed")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.RootFS.DiffIDs, src.DiffIDs) {
		t.Errorf("pushed diff IDs %v, want %v", cfg.RootFS.DiffIDs, src.DiffIDs)
	}
	for i, l := range man.Layers {
		if l.Digest != src.DiffIDs[i] {
			t.Errorf("layer %d pushed uncompressed as %s, want the original tar's digest %s", i, l.Digest, src.DiffIDs[i])
		}
		if l.MediaType == imgspecv1.MediaTypeImageLayer && src.LayerDigests[i] == src.DiffIDs[i] && l.Digest != src.LayerDigests[i] {
			t.Errorf("uncompressed layer %d changed digest: %s, was %s", i, l.Digest, src.LayerDigests[i])
		}
	}
	// Push as podman does by default (gzip): the uncompressed contents
	// still match the original diff IDs.
	gz := filepath.Join(t.TempDir(), "gz")
	c.ok("push", "localhost/layout:v1", "oci:"+gz+":pushed")
	man, _, err = ocifix.ReadManifest(gz, "pushed")
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range man.Layers {
		if got := gunzipDigest(t, ocifix.BlobPath(gz, l.Digest)); got != src.DiffIDs[i] {
			t.Errorf("gzip-pushed layer %d decompresses to %s, want %s", i, got, src.DiffIDs[i])
		}
	}
	// The pushed layout pulls again into the same image.
	if again := lastLine(c.ok("pull", "oci:"+plain+":pushed")); again != id {
		t.Errorf("re-pulling the pushed image gave ID %s, want %s", again, id)
	}
	c.ok("rmi", "localhost/plain:pushed")
}

// gunzipDigest returns the digest of the decompressed gzip file at path.
func gunzipDigest(t *testing.T, path string) digest.Digest {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
}

// TestCLITreesMatchOverlay pulls the same OCI image with the cfs and
// the overlay driver (chosen in storage.conf), creates and mounts a
// container with the CLI, compares the mounted trees entry by entry,
// and runs the image on both.
func TestCLITreesMatchOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	views := map[string][]string{}
	for _, driver := range []string{"overlay", "cfs"} {
		c := newCLI(t, driver)
		c.ok("pull", "-q", "oci:"+layout+":v1")
		ctr := lastLine(c.ok("create", "--name", "tree", "localhost/layout:v1"))
		if !idPattern.MatchString(ctr) {
			t.Fatalf("%s: create: last line %q is not a container ID", driver, ctr)
		}
		mnt := lastLine(c.ok("mount", "tree"))
		view, err := testutil.ListTree(mnt)
		if err != nil {
			t.Fatal(err)
		}
		views[driver] = withoutNlink(view[1:]) // the root's mtime is its creation time
		if out := c.ok("ps"); !strings.Contains(out, "tree") || !strings.Contains(out, "localhost/layout:v1") {
			t.Errorf("%s: ps does not list the container:\n%s", driver, out)
		}
		c.ok("umount", "tree")
		stdout, stderr, code := c.exec("run", "--rm", "localhost/layout:v1", "cat=/replace-me", "exit=4")
		if code != 4 || !strings.Contains(stdout, "file again") {
			t.Errorf("%s: run: exit %d\nstdout: %s\nstderr: %s", driver, code, stdout, stderr)
		}
		c.ok("rm", "tree")
		c.ok("rmi", "localhost/layout:v1")
		if out := c.ok("images", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("%s: rmi left images: %s", driver, out)
		}
	}
	if !slices.Equal(views["overlay"], views["cfs"]) {
		t.Fatalf("cfs container tree differs from overlay's:\n--- overlay\n%s\n--- cfs\n%s",
			strings.Join(views["overlay"], "\n"), strings.Join(views["cfs"], "\n"))
	}
	// What the layers carry reached the container: xattrs, setuid, hard
	// links, whiteouts.
	tree := strings.Join(views["cfs"], "\n")
	for _, want := range []string{`user.origin="test"`, "security.capability=", "bin/suid mode=104755 owner=0:0", "bin/hello mode=100755", "usr/bin/su-link "} {
		if !strings.Contains(tree, want) {
			t.Errorf("container tree lacks %q:\n%s", want, tree)
		}
	}
	for _, gone := range []string{"etc/small ", "opq/old", "replace-me/inner", "usr/lib/libc.so "} {
		if strings.Contains(tree, gone) {
			t.Errorf("container tree still shows whited-out %q", gone)
		}
	}
	if len(views["cfs"]) < 20 {
		t.Fatalf("container tree has only %d entries: the layers did not land", len(views["cfs"]))
	}
}
