package hostlink

import (
	"os"
	"strconv"
	"testing"
)

const sampleMountInfo = `22 1 253:0 / / rw,relatime shared:1 - xfs /dev/vda4 rw,attr2,inode64
23 22 253:0 / /sysroot ro,relatime shared:2 - xfs /dev/vda4 rw,attr2,inode64
24 22 253:0 /ostree/deploy/fedora-coreos/var /var rw,relatime shared:3 - xfs /dev/vda4 rw,attr2,inode64
25 22 0:5 / /dev rw,nosuid master:7 - devtmpfs devtmpfs rw,size=4096k
26 24 7:3 /with\040space /var/mnt/a\040b rw,relatime - ext4 /dev/loop3 rw
27 22 253:0 /ostree/deploy/fedora-coreos/var /var rw,relatime shared:3 - xfs /dev/vda4 rw
`

func TestParseMountInfo(t *testing.T) {
	ms, err := parseMountInfo([]byte(sampleMountInfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 6 {
		t.Fatalf("got %d entries, want 6", len(ms))
	}
	sys := ms[1]
	if sys.id != 23 || sys.parent != 22 || sys.major != 253 || sys.minor != 0 || sys.root != "/" ||
		sys.mountPoint != "/sysroot" || !sys.readOnly() || sys.fsType != "xfs" || sys.source != "/dev/vda4" ||
		sys.superOptions != "rw,attr2,inode64" {
		t.Errorf("sysroot entry: %+v", sys)
	}
	if ms[0].readOnly() {
		t.Error("/ parsed as read-only")
	}
	if ms[4].root != "/with space" || ms[4].mountPoint != "/var/mnt/a b" || ms[4].fsType != "ext4" {
		t.Errorf("escaped entry: %+v", ms[4])
	}
	if ms[3].fsType != "devtmpfs" || ms[3].superOptions != "rw,size=4096k" {
		t.Errorf("entry with optional field: %+v", ms[3])
	}
}

func TestParseMountInfoMalformed(t *testing.T) {
	for _, bad := range []string{
		"22 1 253:0 / / rw,relatime shared:1 xfs /dev/vda4 rw\n", // no separator
		"x 1 253:0 / / rw - xfs /dev/vda4 rw\n",
		"22 1 253 / / rw - xfs /dev/vda4 rw\n",
		"22 1 253:0 / / rw -\n",
	} {
		if _, err := parseMountInfo([]byte(bad)); err == nil {
			t.Errorf("parseMountInfo(%q) succeeded", bad)
		}
	}
}

func TestMountOfAndFSPath(t *testing.T) {
	ms, _ := parseMountInfo([]byte(sampleMountInfo))
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
		if got := strconv.Itoa(m.id); got != tc.wantID {
			t.Errorf("mountOf(%s) = mount %s, want %s", tc.path, got, tc.wantID)
		}
		if fp, _ := m.fsPath(tc.path); fp != tc.fsPath {
			t.Errorf("fsPath(%s) = %s, want %s", tc.path, fp, tc.fsPath)
		}
	}
}

func TestRootMountFor(t *testing.T) {
	ms, _ := parseMountInfo([]byte(sampleMountInfo))
	m, ok := rootMountFor(ms, 253, 0, "/ostree/repo/objects/ab/cd.file", "/ostree/deploy/fedora-coreos/var/lib/x")
	if !ok || m.root != "/" || m.readOnly() {
		t.Errorf("rootMountFor both = %+v, %v; want the read-write mount of /", m, ok)
	}
	m, ok = rootMountFor(ms, 253, 0, "/ostree/deploy/fedora-coreos/var/a", "/ostree/deploy/fedora-coreos/var/b")
	if !ok || m.root != "/" {
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
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skip("no /proc/self/mountinfo")
	}
	ms, err := parseMountInfo(data)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mountOf(ms, "/")
	if !ok || m.mountPoint != "/" {
		t.Fatalf("no mount for / in this process's mountinfo")
	}
}
