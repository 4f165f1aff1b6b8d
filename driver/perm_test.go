package driver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestUnprivilegedUsersLockedOut checks the permission model: the
// driver's home is root-only, so an unprivileged user can neither read
// layer contents (objects, images, upper dirs) nor tamper with them, even
// where the parent directory is world-readable.
func TestUnprivilegedUsersLockedOut(t *testing.T) {
	testutil.RequireRoot(t)
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := newCore(filepath.Join(parent, "home"), filepath.Join(parent, "run"), defaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	secret := strings.Repeat("secret layer content ", 50)
	applyLayer(t, c, "l", "", mustTar(t, tarfix.File("etc/shadow", secret)))
	var object string
	filepath.Walk(c.contents.objects.ObjectsDir(), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			object = p
		}
		return nil
	})
	if object == "" {
		t.Fatal("no object stored")
	}
	for _, probe := range []string{
		"cat " + object,
		"cat " + c.layers.diffImage("l"),
		"ls " + c.contents.objects.ObjectsDir(),
		"touch " + filepath.Join(c.home, "layers", "planted"),
		"touch " + filepath.Join(c.contents.objects.ObjectsDir(), "planted"),
	} {
		cmd := exec.Command("/bin/sh", "-c", probe)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("as uid 65534, %q succeeded:\n%s", probe, out)
		}
	}
	if st, err := os.Stat(c.home); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("driver home mode %v (%v): want no access for group or others", st.Mode(), err)
	}
}
