package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// fedoraConf is Fedora's and RHEL's stock storage.conf (containers-common,
// comments dropped) with the driver changed to cfs and the store moved:
// c/storage hands the cfs driver "overlay.mountopt=nodev,metacopy=on"
// from the overlay table, which it must skip.
const fedoraConf = `[storage]
driver = "cfs"
runroot = "RUNROOT"
graphroot = "GRAPHROOT"

[storage.options]
additionalimagestores = [
]
pull_options = {enable_partial_images = "true", use_hard_links = "false", ostree_repos=""}

[storage.options.overlay]
mountopt = "nodev,metacopy=on"

[storage.options.thinpool]

[storage.options.zfs]
`

// TestCLIFedoraStorageConf runs cfs-storage (podman's storage path) on a
// store configured by a Fedora-shaped storage.conf naming cfs: pull,
// create, mount and remove work, mountopt flags reach the mount, and
// cfs-prefixed and unprefixed --storage-opt keys are taken.
func TestCLIFedoraStorageConf(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	c := newCLI(t, "cfs")
	conf := strings.NewReplacer("RUNROOT", c.runroot, "GRAPHROOT", c.root).Replace(fedoraConf)
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	id := lastLine(c.ok("pull", "oci:"+layout+":v1"))
	ctr := lastLine(c.ok("create", id[:12]))
	mnt := lastLine(c.ok("mount", ctr))
	if _, err := os.Stat(filepath.Join(mnt, "etc", "passwd")); err != nil {
		t.Errorf("mounted container: %v", err)
	}
	c.ok("umount", ctr)
	c.ok("rm", ctr)
	// mountopt's flags reach the mount as flags (not overlay data,
	// which the kernel refused with EINVAL).
	ctr = lastLine(c.ok("--storage-opt", "mountopt=nodev,nosuid", "create", id[:12]))
	mnt = lastLine(c.ok("--storage-opt", "mountopt=nodev,nosuid", "mount", ctr))
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == mnt {
			found = true
			if !strings.Contains(","+f[5]+",", ",nodev,") || !strings.Contains(","+f[5]+",", ",nosuid,") {
				t.Errorf("mount %s has options %s, want nodev and nosuid", mnt, f[5])
			}
		}
	}
	if !found {
		t.Errorf("%s is not in the mount table", mnt)
	}
	c.ok("umount", ctr)
	c.ok("rm", ctr)
	for _, opt := range []string{"host_link=copy", "cfs.host_link=copy"} {
		c.ok("--storage-opt", opt, "images")
	}
	if _, stderr, code := c.exec("--storage-opt", "cfs.no_such_key=1", "images"); code == 0 || !strings.Contains(stderr, "no_such_key") {
		t.Errorf("an unknown cfs key: exit %d, stderr %s", code, stderr)
	}
}
