package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// LoopFS creates a sparse image file of size bytes in a temporary
// directory, attaches it to a free loop device, makes the filesystem
// with mkfs (for example "mkfs.xfs", "-m", "reflink=1") on it and
// returns the device. The device is detached in the test's cleanup,
// which runs after the cleanups of mounts made later in the test (a
// lazily unmounted filesystem still in use detaches when it is
// released: losetup -d sets autoclear on a busy device).
func LoopFS(t testing.TB, size int64, mkfs ...string) string {
	t.Helper()
	RequireRoot(t)
	losetup := RequireTool(t, "losetup")
	mkfsPath := RequireTool(t, mkfs[0])
	image := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(image)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatalf("image file: %v", err)
	}
	out, err := exec.Command(losetup, "--find", "--show", image).CombinedOutput()
	if err != nil {
		Unavailable(t, "no loop device: losetup --find: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	args := append(append([]string{}, mkfs[1:]...), dev)
	if out, err := exec.Command(mkfsPath, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", mkfs[0], args, err, out)
	}
	return dev
}
