package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestCLIReadOnlyImageStore: images pulled into one store run from
// another that lists it in additionalimagestores, read-only bind-mounted:
// the image lists, a container runs, the store holds no object of its
// own, and df shows what it shares with the read-only one (a write into
// the read-only bind mount would fail the commands).
func TestCLIReadOnlyImageStore(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	seed := newCLI(t, "cfs")
	seed.ok("pull", "-q", "oci:"+layout+":v1")
	seed.ok("run", "--rm", "localhost/layout:v1") // a flattened image there too
	ro := filepath.Join(t.TempDir(), "ro")
	must(t, os.MkdirAll(ro, 0o755))
	must(t, unix.Mount(seed.root, ro, "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(ro, unix.MNT_DETACH) })
	must(t, unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))

	c := newCLI(t, "cfs")
	conf, err := os.ReadFile(c.conf)
	must(t, err)
	conf = append(conf, []byte("[storage.options]\nadditionalimagestores = [\""+ro+"\"]\n")...)
	must(t, os.WriteFile(c.conf, conf, 0o644))
	if out := c.ok("images"); !strings.Contains(out, "localhost/layout") {
		t.Fatalf("images of the read-only store not listed:\n%s", out)
	}
	if out := c.ok("run", "--rm", "localhost/layout:v1", "cat=/etc/passwd"); !strings.Contains(out, "root:") {
		t.Errorf("container on a read-only store's image: %q", out)
	}
	var r struct {
		ReadOnlyStores []struct {
			Root     string
			Layers   int
			Bytes    int64
			Imported int64
		}
		Total struct{ Objects int64 }
	}
	must(t, json.Unmarshal([]byte(c.ok("df", "--format", "json")), &r))
	if len(r.ReadOnlyStores) != 1 || r.ReadOnlyStores[0].Root != ro || r.ReadOnlyStores[0].Layers < 4 || r.ReadOnlyStores[0].Bytes == 0 {
		t.Errorf("df read-only stores: %+v", r.ReadOnlyStores)
	}
	if r.Total.Objects != 0 {
		t.Errorf("the store holds %d objects of its own; want none", r.Total.Objects)
	}
	if out := c.ok("df"); !strings.Contains(out, "READ-ONLY STORE") || !strings.Contains(out, ro) {
		t.Errorf("df table without the read-only store:\n%s", out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
