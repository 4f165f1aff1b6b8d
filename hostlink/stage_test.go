package hostlink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

func reexecHelper(args ...string) (*exec.Cmd, error) { return reexec.Command(args...), nil }

// stageLayout is a filesystem F with F/sysroot/repo holding one object
// and F/var, as on Fedora CoreOS: S is a read-only bind of F/sysroot and
// V a read-write bind of F/var.
type stageLayout struct {
	fs, sysroot, varDir string
	object              string // the object through S
}

// newStageLayout mounts a tmpfs and the two binds, all cleaned up with
// the test.
func newStageLayout(t testing.TB) stageLayout {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	l := stageLayout{fs: filepath.Join(dir, "F"), sysroot: filepath.Join(dir, "S"), varDir: filepath.Join(dir, "V")}
	for _, d := range []string{l.fs, l.sysroot, l.varDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Mount(t, "tmpfs", l.fs, "tmpfs", 0, "size=16m")
	obj := filepath.Join(l.fs, "sysroot/repo/objects/ab/cdef.file")
	if err := os.MkdirAll(filepath.Dir(obj), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(l.fs, "var/store"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj, []byte("host content"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Mount(t, filepath.Join(l.fs, "sysroot"), l.sysroot, "", unix.MS_BIND, "")
	testutil.Mount(t, "", l.sysroot, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
	testutil.Mount(t, filepath.Join(l.fs, "var"), l.varDir, "", unix.MS_BIND, "")
	l.object = filepath.Join(l.sysroot, "repo/objects/ab/cdef.file")
	return l
}

func (l stageLayout) stager(t testing.TB, helper bool) *Stager {
	t.Helper()
	opts := StagerOptions{Dir: filepath.Join(l.varDir, "store/staging"), Repo: filepath.Join(l.sysroot, "repo")}
	if helper {
		opts.Helper = reexecHelper
	}
	s, err := NewStager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func inode(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStageAcrossBindMounts reproduces the CoreOS EXDEV and checks that
// the helper stages the host inode, that the store can then hard-link
// the staged name within its own mount, and that release and Close
// leave nothing behind.
func TestStageAcrossBindMounts(t *testing.T) {
	l := newStageLayout(t)
	if err := unix.Link(l.object, filepath.Join(l.varDir, "direct")); !errors.Is(err, unix.EXDEV) {
		t.Fatalf("link across the bind mounts: %v, want EXDEV (the layout does not reproduce CoreOS)", err)
	}
	s := l.stager(t, true)
	before := inode(t, l.object)
	staged, release, err := s.Stage(context.Background(), l.object)
	if err != nil {
		t.Fatal(err)
	}
	st := inode(t, staged)
	if st.Ino != before.Ino || st.Dev != before.Dev {
		t.Fatalf("staged %s is inode %d, host object %d", staged, st.Ino, before.Ino)
	}
	// What the store does next: a hard link within /var's mount.
	final := filepath.Join(l.varDir, "store/object")
	if err := unix.Link(staged, final); err != nil {
		t.Fatalf("link from staging into the store: %v", err)
	}
	release()
	if _, err := os.Lstat(staged); !os.IsNotExist(err) {
		t.Errorf("release left %s: %v", staged, err)
	}
	after := inode(t, l.object)
	if after.Mode != before.Mode || after.Uid != before.Uid || after.Mtim != before.Mtim || after.Nlink != 2 {
		t.Errorf("host object changed: mode %o→%o uid %d→%d nlink %d (want 2: host and store)", before.Mode, after.Mode, before.Uid, after.Uid, after.Nlink)
	}
	if got := s.Stats(); got.Namespace != 1 || got.Direct != 0 || got.Failed != 0 {
		t.Errorf("stats %+v, want one namespace link", got)
	}
	// The helper serves more requests.
	if _, release, err := s.Stage(context.Background(), l.object); err != nil {
		t.Fatalf("second stage: %v", err)
	} else {
		release()
	}
	session := s.session
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(session); !os.IsNotExist(err) {
		t.Errorf("Close left the session %s: %v", session, err)
	}
}

// TestStageWithoutHelper: across the bind mounts without a helper the
// object is not stageable; within one mount a plain link stages it.
func TestStageWithoutHelper(t *testing.T) {
	l := newStageLayout(t)
	s := l.stager(t, false)
	if _, _, err := s.Stage(context.Background(), l.object); !errors.Is(err, errNotStageable) {
		t.Fatalf("Stage without helper: %v, want ErrNotStageable", err)
	}
	// Through F itself, repository and staging share one mount.
	s2, err := NewStager(StagerOptions{Dir: filepath.Join(l.fs, "var/store/staging2"), Repo: filepath.Join(l.fs, "sysroot/repo")})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	object := filepath.Join(l.fs, "sysroot/repo/objects/ab/cdef.file")
	staged, release, err := s2.Stage(context.Background(), object)
	if err != nil {
		t.Fatal(err)
	}
	// On one mount no staged name is needed: the host path serves.
	if staged != object || release != nil {
		t.Errorf("same-mount stage gave %s (release %v), want the host path itself", staged, release != nil)
	}
	if inode(t, staged).Ino != inode(t, l.object).Ino || s2.Stats().Direct != 1 {
		t.Errorf("direct stage: not the host inode, or stats %+v", s2.Stats())
	}
	if err := unix.Link(staged, filepath.Join(l.fs, "var/store/linked")); err != nil {
		t.Errorf("the store cannot hard-link the host path: %v", err)
	}
	if _, _, err := s2.Stage(context.Background(), filepath.Join(l.fs, "var/store/elsewhere")); !errors.Is(err, errNotStageable) {
		t.Errorf("Stage of a path outside the repository: %v", err)
	}
}

// TestStageHelperRefusesOtherSuperblock: with F unmounted, the helper
// can only mount the filesystem's source again; a tmpfs source gives a
// new, empty filesystem, which the helper must detect and refuse.
func TestStageHelperRefusesOtherSuperblock(t *testing.T) {
	l := newStageLayout(t)
	testutil.Unmount(t, l.fs)
	s := l.stager(t, true)
	_, _, err := s.Stage(context.Background(), l.object)
	if !errors.Is(err, errNotStageable) {
		t.Fatalf("Stage: %v, want ErrNotStageable", err)
	}
	t.Logf("refused as expected: %v", err)
	if _, _, err2 := s.Stage(context.Background(), l.object); !errors.Is(err2, errNotStageable) || s.Stats().Failed != 2 {
		t.Errorf("second Stage: %v, stats %+v", err2, s.Stats())
	}
}

// TestStagerCleansStaleSessions: a session no process holds (a crash)
// is removed by the next NewStager; a held one is kept.
func TestStagerCleansStaleSessions(t *testing.T) {
	dir, repo := t.TempDir(), t.TempDir()
	stale := filepath.Join(dir, "s-crashed")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "o-1"), []byte("x"), 0o644)
	live, err := NewStager(StagerOptions{Dir: dir, Repo: repo})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale session kept: %v", err)
	}
	other, err := NewStager(StagerOptions{Dir: dir, Repo: repo})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := os.Stat(live.session); err != nil {
		t.Errorf("a live session was removed: %v", err)
	}
	if _, err := NewStager(StagerOptions{Dir: filepath.Join(repo, "staging"), Repo: repo}); !errors.Is(err, errInvalidOptions) {
		t.Errorf("staging inside the repository: %v", err)
	}
}

// TestStageConcurrent stages from many goroutines through one helper.
func TestStageConcurrent(t *testing.T) {
	l := newStageLayout(t)
	s := l.stager(t, true)
	host := inode(t, l.object)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				staged, release, err := s.Stage(context.Background(), l.object)
				if err != nil {
					errs <- err
					return
				}
				var st unix.Stat_t
				if err := unix.Lstat(staged, &st); err != nil || st.Ino != host.Ino {
					errs <- fmt.Errorf("staged %s: ino %d, want %d (%v)", staged, st.Ino, host.Ino, err)
				}
				release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.Stats(); got.Namespace != 200 {
		t.Errorf("stats %+v, want 200 namespace links", got)
	}
	if n := inode(t, l.object).Nlink; n != 1 {
		t.Errorf("host object has %d links after every release, want 1", n)
	}
}

// BenchmarkStageNamespace measures one stage and release through the
// namespace helper (the helper started once, outside the timing).
func BenchmarkStageNamespace(b *testing.B) {
	l := newStageLayout(b)
	s, err := NewStager(StagerOptions{Dir: filepath.Join(l.varDir, "store/staging"), Repo: filepath.Join(l.sysroot, "repo"), Helper: reexecHelper})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	_, release, err := s.Stage(context.Background(), l.object) // starts the helper
	if err != nil {
		b.Fatal(err)
	}
	release()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, release, err := s.Stage(context.Background(), l.object)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}

// TestStageHelperRefusesHostNamespace: run in the namespace of its
// parent, the helper mounts nothing and says why.
func TestStageHelperRefusesHostNamespace(t *testing.T) {
	l := newStageLayout(t)
	session := filepath.Join(l.varDir, "store")
	mnt := t.TempDir()
	var out strings.Builder
	err := runStageHelper(strings.NewReader(""), &out, filepath.Join(l.sysroot, "repo"), session, mnt)
	if err == nil || !strings.Contains(out.String(), "private mount namespace") {
		t.Fatalf("helper in the host namespace: %v, reply %q", err, out.String())
	}
	if ok, _ := testutil.MountedAt(mnt); ok {
		t.Fatalf("helper mounted on %s in the host namespace", mnt)
	}
}
