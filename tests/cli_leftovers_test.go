package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/tests/ocifix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// storeLayers lists the layer IDs of the store at root (c/storage's
// layers.json of the cfs driver), read without opening the store.
func storeLayers(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "cfs-layers", "layers.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var layers []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &layers); err != nil {
		t.Fatalf("layers.json: %v", err)
	}
	ids := make([]string, len(layers))
	for i, l := range layers {
		ids[i] = l.ID
	}
	return ids
}

// dirEntries lists dir's entry names (none if dir is missing).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// start runs cfs-storage ARGS in the background.
func (c *cli) start(args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+c.conf)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// TestCLIPullLeftovers: a pull keeps c/image's temporary blob copies in
// <graphroot>/cfs-storage/tmp (not /var/tmp); a killed pull's directory
// is reaped by the next command. While a pull runs, gc keeps the layers
// it wrote that no image uses yet; once the pull is killed, or refused
// at its last layer, gc removes them.
func TestCLIPullLeftovers(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	img := testImage(t, layout)
	n := len(img.LayerDigests)
	last := ocifix.BlobPath(layout, img.LayerDigests[n-1])
	blob, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	c := newCLI(t, "cfs")
	tmpRoot := filepath.Join(c.root, "cfs-storage", "tmp")

	// The last layer's blob is a FIFO nobody writes: the pull stalls
	// there, after committing the layers before it.
	os.Remove(last)
	if err := syscall.Mkfifo(last, 0o644); err != nil {
		t.Fatal(err)
	}
	pull := c.start("pull", "-q", "oci:"+layout+":v1")
	waitFor(t, 2*time.Minute, "the pull to commit all layers but the last", func() bool {
		return len(storeLayers(t, c.root)) == n-1
	})
	ents := dirEntries(t, tmpRoot)
	if len(ents) != 1 {
		t.Fatalf("%s during the pull: %v, want the pull's directory", tmpRoot, ents)
	}
	if sub := dirEntries(t, filepath.Join(tmpRoot, ents[0])); len(sub) == 0 || !strings.HasPrefix(sub[0], "container_images_") {
		t.Errorf("c/image's temporary files are not in the store's directory: %v", sub)
	}
	if out := c.ok("gc"); !strings.Contains(out, "kept 4 layers") && !strings.Contains(out, "pull is in progress") {
		t.Errorf("gc during the pull did not say it kept the pull's layers:\n%s", out)
	}
	if got := storeLayers(t, c.root); len(got) != n-1 {
		t.Fatalf("gc during the pull removed its layers: %d left of %d", len(got), n-1)
	}

	pull.Process.Kill()
	pull.Wait()
	if len(dirEntries(t, tmpRoot)) != 1 {
		t.Fatal("the killed pull's directory is gone before any command ran")
	}
	c.ok("images")
	if ents := dirEntries(t, tmpRoot); len(ents) != 0 {
		t.Fatalf("the next command did not reap the killed pull's directory: %v", ents)
	}
	out := c.ok("gc")
	if got := storeLayers(t, c.root); len(got) != 0 {
		t.Fatalf("gc after the killed pull left %d layers no image uses:\n%s", len(got), out)
	}
	t.Logf("gc after the killed pull: %s", strings.TrimSpace(out))

	// A pull refused at its last layer (its blob does not match its
	// digest) leaves the layers before it; gc removes them.
	os.Remove(last)
	bad := append([]byte(nil), blob...)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(last, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := c.exec("pull", "-q", "oci:"+layout+":v1"); code == 0 {
		t.Fatal("a pull with a corrupt layer succeeded")
	} else {
		t.Logf("refused pull: %s", lastLine(stderr))
	}
	if ents := dirEntries(t, tmpRoot); len(ents) != 0 {
		t.Errorf("the refused pull left its temporary directory: %v", ents)
	}
	orphans := len(storeLayers(t, c.root))
	if orphans == 0 {
		t.Log("the refused pull committed no layer before failing")
	}
	c.ok("gc")
	if got := storeLayers(t, c.root); len(got) != 0 {
		t.Fatalf("gc kept %d of the %d layers the refused pull left", len(got), orphans)
	}

	// The intact image pulls and runs; gc keeps its layers.
	if err := os.WriteFile(last, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("pull", "-q", "oci:"+layout+":v1")
	c.ok("gc")
	if got := storeLayers(t, c.root); len(got) != n {
		t.Fatalf("gc changed the pulled image's layers: %d, want %d", len(got), n)
	}
	if out := c.ok("run", "--rm", "localhost/layout:v1", "cat=/etc/passwd"); !strings.Contains(out, "root:") {
		t.Fatalf("run after gc:\n%s", out)
	}
}
