package tests

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestCLIPullKilled kills `cfs-storage pull` (podman's pull path on cfs)
// with SIGKILL at random moments, again and again into one store. After
// every kill the next command's store opening recovers (c/storage drops
// incomplete layers), fsck finds no problem, and an image the store lists
// runs. Finally a full pull runs, and after removing every image gc
// leaves no object behind.
func TestCLIPullKilled(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	c := newCLI(t, "cfs")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	deadline := time.Now().Add(15 * time.Second)
	kills, survived := 0, 0
	for time.Now().Before(deadline) {
		cmd := exec.Command(c.bin, "pull", "-q", "oci:"+layout+":v1")
		cmd.Env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+c.conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(time.Duration(5+rng.Intn(300))*time.Millisecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
		err := cmd.Wait()
		timer.Stop()
		if err != nil {
			kills++
		}
		if stdout, stderr, code := c.exec("fsck"); code != 0 {
			t.Fatalf("fsck after a killed pull (kill %d): exit %d\n%s\n%s", kills, code, stdout, stderr)
		}
		if strings.Contains(c.ok("images"), "layout") {
			survived++
			if out := c.ok("run", "--rm", "localhost/layout:v1", "cat=/etc/passwd"); !strings.Contains(out, "args=") || !strings.Contains(out, "root:") {
				t.Fatalf("image listed after a killed pull does not run right:\n%s", out)
			}
			c.ok("rmi", "-f", "localhost/layout:v1")
		}
	}
	t.Logf("%d pulls killed, %d complete images found between them", kills, survived)
	if kills == 0 {
		t.Fatal("no pull was killed: the test exercised nothing")
	}
	c.ok("pull", "-q", "oci:"+layout+":v1")
	if out := c.ok("run", "--rm", "localhost/layout:v1", "cat=/etc/passwd"); !strings.Contains(out, "args=") || !strings.Contains(out, "root:") {
		t.Fatalf("run after the killed pulls:\n%s", out)
	}
	c.ok("rmi", "-f", "--all")
	c.ok("gc")
	var left []string
	filepath.Walk(filepath.Join(c.root, "cfs", "objects"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Fatalf("after removing every image, gc left %d objects (leaked by killed pulls): %v", len(left), left[:min(3, len(left))])
	}
}
