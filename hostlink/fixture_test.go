package hostlink

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// treeFile describes one path of the synthetic tree committed by the
// privileged tests.
type treeFile struct {
	path     string
	kind     byte   // 'f' file, 'd' directory, 'l' symlink, 'h' hard link
	mode     uint32 // permission and setuid/setgid/sticky bits
	uid, gid int
	content  string // file content, symlink target, or hard link source
	xattrs   [][2]string
}

// syntheticTree has every kind of entry ostree records: files of varied
// modes and owners, setuid, an empty file, a file over one page, xattrs
// set in non-sorted order (ostree sorts them), a directory with xattrs and
// a restrictive mode, symlinks (relative, absolute, dangling), a hard link.
var syntheticTree = []treeFile{
	{path: "etc", kind: 'd', mode: 0o755},
	{path: "etc/hostname", kind: 'f', mode: 0o644, content: "host\n"},
	{path: "etc/shadow", kind: 'f', mode: 0o600, uid: 0, gid: 42, content: "root:*:19000::::::\n"},
	{path: "etc/attrs", kind: 'f', mode: 0o644, uid: 1000, gid: 100, content: "x",
		xattrs: [][2]string{{"user.zeta", "last"}, {"user.alpha", "first"}, {"user.mid", ""}}},
	{path: "usr", kind: 'd', mode: 0o755, xattrs: [][2]string{{"user.dir", "1"}}},
	{path: "usr/bin", kind: 'd', mode: 0o755},
	{path: "usr/bin/tool", kind: 'f', mode: 0o755, content: strings.Repeat("tool binary ", 1000)},
	{path: "usr/bin/su", kind: 'f', mode: 0o4755, content: "setuid"},
	{path: "usr/bin/sh", kind: 'l', content: "dash"},
	{path: "usr/bin/tool-link", kind: 'h', content: "usr/bin/tool"},
	{path: "usr/lib", kind: 'l', content: "/usr/lib64"},
	{path: "usr/share", kind: 'd', mode: 0o700, uid: 1000, gid: 1000},
	{path: "usr/share/empty", kind: 'f', mode: 0o444, content: ""},
	{path: "usr/share/dangling", kind: 'l', content: "../nowhere"},
	{path: "usr/share/dup", kind: 'f', mode: 0o644, content: "host\n"},
	{path: "home", kind: 'd', mode: 0o755},
	{path: "home/user", kind: 'd', mode: 0o750, uid: 1000, gid: 1000},
	{path: "home/user/notes", kind: 'f', mode: 0o640, uid: 1000, gid: 1000, content: "notes"},
}

// writeTree creates syntheticTree under dir (as root: owners are set).
func writeTree(t *testing.T, dir string) {
	t.Helper()
	for _, f := range syntheticTree {
		p := filepath.Join(dir, f.path)
		var err error
		switch f.kind {
		case 'd':
			err = os.Mkdir(p, 0o755)
		case 'f':
			err = os.WriteFile(p, []byte(f.content), 0o644)
		case 'l':
			err = os.Symlink(f.content, p)
		case 'h':
			err = os.Link(filepath.Join(dir, f.content), p)
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.kind == 'l' || f.kind == 'h' {
			continue
		}
		for _, x := range f.xattrs {
			if err := unix.Setxattr(p, x[0], []byte(x[1]), 0); err != nil {
				t.Fatalf("setxattr %s: %v", p, err)
			}
		}
		if err := os.Chown(p, f.uid, f.gid); err != nil {
			t.Fatal(err)
		}
		// chmod after chown: chown clears the setuid bit.
		if err := unix.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
}

// testRepo is a real repository made by Debian's ostree.
type testRepo struct {
	path   string
	src    string
	commit checksum
}

// ostreeCmd runs ostree with args and returns its standard output.
func ostreeCmd(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ostree", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ostree %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// makeRepo builds the synthetic tree and commits it to a new repository
// of the given mode on branch "test". Needs root and ostree.
func makeRepo(t *testing.T, mode string) *testRepo {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "ostree")
	dir := t.TempDir()
	tr := &testRepo{path: filepath.Join(dir, "repo"), src: filepath.Join(dir, "src")}
	if err := os.Mkdir(tr.src, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTree(t, tr.src)
	ostreeCmd(t, "init", "--repo="+tr.path, "--mode="+mode)
	out := ostreeCmd(t, "commit", "--repo="+tr.path, "--branch=test", "--subject=synthetic", "--tree=dir="+tr.src)
	c, err := parseChecksum(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("ostree commit output %q: %v", out, err)
	}
	tr.commit = c
	return tr
}

// supportedModes are the repository modes OpenRepo accepts.
var supportedModes = []string{"bare", "bare-user", "bare-user-only"}
