package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestCLIDfHostRepo pulls the test image into a cfs store whose host
// repository (a real ostree bare repo) holds /bin/hello's content under
// another path: df reports those bytes as shared with the host.
func TestCLIDfHostRepo(t *testing.T) {
	testutil.RequireRoot(t)
	ostree := testutil.RequireTool(t, "ostree")
	_, hello := buildBinaries(t)
	dir := t.TempDir()
	repo, tree := filepath.Join(dir, "repo"), filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "usr/libexec"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(hello)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "usr/libexec/host-copy"), data, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--repo=" + repo, "init", "--mode=bare"},
		{"--repo=" + repo, "commit", "-b", "host", "--tree=dir=" + tree},
	} {
		if out, err := exec.Command(ostree, args...).CombinedOutput(); err != nil {
			t.Fatalf("ostree %v: %v\n%s", args, err, out)
		}
	}
	layout := filepath.Join(dir, "layout")
	testImage(t, layout)
	c := newCLI(t, "cfs")
	opt := "cfs.host_repo=" + repo
	c.ok("--storage-opt", opt, "pull", "-q", "oci:"+layout+":v1")
	stdout := c.ok("--storage-opt", opt, "df")
	if !strings.Contains(stdout, "beyond the host") {
		t.Errorf("df does not show what the store takes beyond the host:\n%s", stdout)
	}
	r := c.df()
	if _, _, _, host := r.image(t, "localhost/layout:v1"); host < int64(len(data)) || r.Total.HostSharedBytes < int64(len(data)) {
		t.Errorf("df: image host-shared %d, store %d; want at least /bin/hello's %d bytes", host, r.Total.HostSharedBytes, len(data))
	}
}
