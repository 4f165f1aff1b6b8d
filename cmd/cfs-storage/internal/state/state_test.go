package state

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestReapKeepsLockedDirs: a locked directory is in use and kept; once
// released (its process killed) it is stale and reaped. A child process
// that inherited the lock keeps the directory after the parent lets go.
func TestReapKeepsLockedDirs(t *testing.T) {
	root := t.TempDir()
	a, err := createLocked(root, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := createLocked(root, "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := createLocked(root, "a"); err == nil {
		t.Fatal("createLocked over an existing directory succeeded")
	}
	if busy, err := inUse(filepath.Join(root, "a")); err != nil || !busy {
		t.Fatalf("inUse(locked a) = %v, %v", busy, err)
	}
	if n, err := reapDir(root, nil); err != nil || n != 0 {
		t.Fatalf("reap with both locked: removed %d, %v", n, err)
	}

	child := exec.Command("sleep", "30")
	child.ExtraFiles = []*os.File{b.File()}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	a.Release()
	b.Release()
	if n, err := reapDir(root, nil); err != nil || n != 1 {
		t.Fatalf("reap after release: removed %d, %v; want a only", n, err)
	}
	if got := names(t, root); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("left %v, want [b] (held by the child)", got)
	}
	child.Process.Kill()
	child.Wait()
	if n, err := reapDir(root, nil); err != nil || n != 1 || len(names(t, root)) != 0 {
		t.Fatalf("reap after the child's death: removed %d, %v, left %v", n, err, names(t, root))
	}
}

// TestReapNewDirs: a ".new-" directory is being created (its maker locks
// it right away): kept while young even unlocked, reaped once old.
func TestReapNewDirs(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, newPrefix+"x")
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if n, _ := reapDir(root, nil); n != 0 {
		t.Fatal("a young .new- directory was reaped")
	}
	old := time.Now().Add(-2 * staleNewAge)
	os.Chtimes(p, old, old)
	if n, _ := reapDir(root, nil); n != 1 {
		t.Fatal("an old unlocked .new- directory was kept")
	}
}

// TestGate: shared holders coexist and keep the exclusive one out.
func TestGate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "layers.lock")
	s1, err := lockPath(p, unix.LOCK_SH, true)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := lockPath(p, unix.LOCK_SH|unix.LOCK_NB, true)
	if err != nil || s2 == nil {
		t.Fatalf("second shared holder: %v, %v", s2, err)
	}
	if x, err := lockPath(p, unix.LOCK_EX|unix.LOCK_NB, true); err != nil || x != nil {
		t.Fatalf("exclusive while shared held: %v, %v", x, err)
	}
	s1.Release()
	s2.Release()
	x, err := lockPath(p, unix.LOCK_EX|unix.LOCK_NB, true)
	if err != nil || x == nil {
		t.Fatalf("exclusive when free: %v, %v", x, err)
	}
	x.Release()
}
