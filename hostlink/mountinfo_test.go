package hostlink

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

const sampleMountInfo = `22 1 253:0 / / rw,relatime shared:1 - xfs /dev/vda4 rw,attr2,inode64
23 22 253:0 / /sysroot ro,relatime shared:2 - xfs /dev/vda4 rw,attr2,inode64
24 22 253:0 /ostree/deploy/fedora-coreos/var /var rw,relatime shared:3 - xfs /dev/vda4 rw,attr2,inode64
25 22 0:5 / /dev rw,nosuid master:7 - devtmpfs devtmpfs rw,size=4096k
26 24 7:3 /with\040space /var/mnt/a\040b rw,relatime - ext4 /dev/loop3 rw
27 22 253:0 /ostree/deploy/fedora-coreos/var /var rw,relatime shared:3 - xfs /dev/vda4 rw
`

// parseSample parses sampleMountInfo as the library does
// /proc/self/mountinfo.
func parseSample(t *testing.T) []*mountinfo.Info {
	t.Helper()
	ms, err := mountinfo.GetMountsFromReader(strings.NewReader(sampleMountInfo), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestParseMountInfo checks the fields this package uses, as the
// library parses them: octal escapes undone, optional fields skipped.
func TestParseMountInfo(t *testing.T) {
	ms := parseSample(t)
	if len(ms) != 6 {
		t.Fatalf("got %d entries, want 6", len(ms))
	}
	sys := ms[1]
	if sys.ID != 23 || sys.Major != 253 || sys.Minor != 0 || sys.Root != "/" ||
		sys.Mountpoint != "/sysroot" || !readOnly(sys) || sys.FSType != "xfs" || sys.Source != "/dev/vda4" {
		t.Errorf("sysroot entry: %+v", sys)
	}
	if readOnly(ms[0]) {
		t.Error("/ parsed as read-only")
	}
	if ms[4].Root != "/with space" || ms[4].Mountpoint != "/var/mnt/a b" || ms[4].FSType != "ext4" {
		t.Errorf("escaped entry: %+v", ms[4])
	}
	if ms[3].FSType != "devtmpfs" || ms[3].Source != "devtmpfs" {
		t.Errorf("entry with optional field: %+v", ms[3])
	}
}

func TestMountOfAndFSPath(t *testing.T) {
	ms := parseSample(t)
	for _, tc := range []struct{ path, wantID, fsPath string }{
		{"/sysroot/ostree/repo/objects/ab/cd.file", "23", "/ostree/repo/objects/ab/cd.file"},
		{"/var/lib/containers/storage", "27", "/ostree/deploy/fedora-coreos/var/lib/containers/storage"},
		{"/var", "27", "/ostree/deploy/fedora-coreos/var"},
		{"/variable", "22", "/variable"},
		{"/var/mnt/a b/c", "26", "/with space/c"},
		{"/etc", "22", "/etc"},
	} {
		m, ok := mountOf(ms, tc.path)
		if !ok {
			t.Fatalf("no mount for %s", tc.path)
		}
		if got := strconv.Itoa(m.ID); got != tc.wantID {
			t.Errorf("mountOf(%s) = mount %s, want %s", tc.path, got, tc.wantID)
		}
		if fp, _ := fsPath(&m, tc.path); fp != tc.fsPath {
			t.Errorf("fsPath(%s) = %s, want %s", tc.path, fp, tc.fsPath)
		}
	}
}

func TestRootMountFor(t *testing.T) {
	ms := parseSample(t)
	m, ok := rootMountFor(ms, 253, 0, "/ostree/repo/objects/ab/cd.file", "/ostree/deploy/fedora-coreos/var/lib/x")
	if !ok || m.Root != "/" || readOnly(&m) {
		t.Errorf("rootMountFor both = %+v, %v; want the read-write mount of /", m, ok)
	}
	m, ok = rootMountFor(ms, 253, 0, "/ostree/deploy/fedora-coreos/var/a", "/ostree/deploy/fedora-coreos/var/b")
	if !ok || m.Root != "/" {
		t.Errorf("rootMountFor = %+v: the shortest root is preferred", m)
	}
	if _, ok := rootMountFor(ms, 7, 3, "/other", "/with space/x"); ok {
		t.Error("rootMountFor found a mount for a path outside every root of the device")
	}
	// Only the /var bind mount: no mount holds the repository.
	if _, ok := rootMountFor(ms[2:3], 253, 0, "/ostree/repo", "/ostree/deploy/fedora-coreos/var/x"); ok {
		t.Error("rootMountFor accepted a mount whose root does not hold the repository")
	}
}

func TestParseOwnMountInfo(t *testing.T) {
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		t.Skip("no /proc/self/mountinfo")
	}
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mountOf(ms, "/")
	if !ok || m.Mountpoint != "/" {
		t.Fatalf("no mount for / in this process's mountinfo")
	}
}
