package testutil

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// OstreeRepo commits files (path → content, mode 0755) into a new
// ostree repository of the given mode (bare, bare-user, …) with
// Debian's ostree, on branch "host", and returns its path.
func OstreeRepo(t testing.TB, mode string, files map[string]string) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "repo")
	OstreeInitCommit(t, repo, mode, files)
	return repo
}

// OstreeInitCommit creates the ostree repository repo of the given mode
// and commits files (path → content, mode 0755) on branch "host".
func OstreeInitCommit(t testing.TB, repo, mode string, files map[string]string) {
	t.Helper()
	ostree := RequireTool(t, "ostree")
	src := t.TempDir()
	for p, content := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "--repo=" + repo, "--mode=" + mode},
		{"commit", "--repo=" + repo, "--branch=host", "--tree=dir=" + src},
	} {
		if out, err := exec.Command(ostree, args...).CombinedOutput(); err != nil {
			t.Fatalf("ostree %v: %v\n%s", args, err, out)
		}
	}
}

// OstreeObjectState records every file object of repo: its inode
// metadata and the SHA-256 of its bytes, to compare before and after
// something that must leave the repository alone.
func OstreeObjectState(t testing.TB, repo string) map[string]string {
	t.Helper()
	state := map[string]string{}
	paths, _ := filepath.Glob(filepath.Join(repo, "objects", "*", "*.file"))
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		state[p] = fmt.Sprintf("mode=%o uid=%d gid=%d mtime=%d size=%d sha256=%x", st.Mode, st.Uid, st.Gid, st.Mtim.Nano(), st.Size, sha256.Sum256(data))
	}
	if len(state) == 0 {
		t.Fatalf("no file objects in %s", repo)
	}
	return state
}

// OstreeFsck runs ostree fsck on repo and fails the test if it fails.
func OstreeFsck(t testing.TB, repo string) {
	t.Helper()
	if out, err := exec.Command("ostree", "fsck", "--repo="+repo).CombinedOutput(); err != nil {
		t.Fatalf("ostree fsck %s: %v\n%s", repo, err, out)
	}
}
