package hostlink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// copyRepo copies a test repository with cp -a (owners, modes, xattrs and
// hard links kept) so that a test may damage the copy.
func copyRepo(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	return dst
}

// flipByte inverts one byte of a file in the middle.
func flipByte(t *testing.T, p string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// damageEnv is what a damage case works on: a copy of a real repository
// and its walked entries by path.
type damageEnv struct {
	r       *Repo
	commit  checksum
	entries map[string]*entry
}

// walkAll walks the commit of e, visiting nothing.
func walkAll(e *damageEnv) error {
	return e.r.walk(context.Background(), e.commit, func(*entry) error { return nil })
}

// damageCases damage a repository copy in one way each, and say which
// operation must then fail, how, and naming what.
func damageCases() []struct {
	name    string
	mode    string
	damage  func(t *testing.T, e *damageEnv)
	op      func(e *damageEnv) error
	wantErr error
	wantMsg string
} {
	return []struct {
		name    string
		mode    string
		damage  func(t *testing.T, e *damageEnv)
		op      func(e *damageEnv) error
		wantErr error
		wantMsg string
	}{
		{"flipped dirtree", "bare", func(t *testing.T, e *damageEnv) {
			flipByte(t, e.r.objectPath(e.entries["/usr"].Checksum, objectDirTree))
		}, walkAll, errCorrupt, "/usr"},
		{"flipped dirmeta", "bare-user", func(t *testing.T, e *damageEnv) {
			flipByte(t, e.r.objectPath(e.entries["/home/user"].DirMeta, objectDirMeta))
		}, walkAll, errCorrupt, "/home/user"},
		{"flipped commit", "bare", func(t *testing.T, e *damageEnv) {
			flipByte(t, e.r.objectPath(e.commit, objectCommit))
		}, walkAll, errCorrupt, e2s(objectCommit)},
		{"flipped file content", "bare", func(t *testing.T, e *damageEnv) {
			flipByte(t, e.r.fileObjectPath(e.entries["/usr/bin/tool"].Checksum))
		}, func(e *damageEnv) error {
			if err := walkAll(e); err != nil { // metadata only: the walk still works
				return fmt.Errorf("walk failed early: %w", err)
			}
			return e.r.verifyFile(e.entries["/usr/bin/tool"].Checksum)
		}, errCorrupt, "checksum to"},
		{"changed owner", "bare", func(t *testing.T, e *damageEnv) {
			if err := os.Lchown(e.r.fileObjectPath(e.entries["/etc/hostname"].Checksum), 7, 7); err != nil {
				t.Fatal(err)
			}
		}, func(e *damageEnv) error { return e.r.verifyFile(e.entries["/etc/hostname"].Checksum) }, errCorrupt, ""},
		{"bad ostreemeta", "bare-user", func(t *testing.T, e *damageEnv) {
			p := e.r.fileObjectPath(e.entries["/etc/shadow"].Checksum)
			if err := unix.Lsetxattr(p, bareUserMetaXattr, []byte{1, 2, 3}, 0); err != nil {
				t.Fatal(err)
			}
		}, walkAll, errCorrupt, "/etc/shadow"},
		{"missing file object", "bare-user-only", func(t *testing.T, e *damageEnv) {
			if err := os.Remove(e.r.fileObjectPath(e.entries["/etc/hostname"].Checksum)); err != nil {
				t.Fatal(err)
			}
		}, walkAll, errMissingObject, "/etc/hostname"},
		{"missing dirtree", "bare", func(t *testing.T, e *damageEnv) {
			if err := os.Remove(e.r.objectPath(e.entries["/usr/bin"].Checksum, objectDirTree)); err != nil {
				t.Fatal(err)
			}
		}, walkAll, errMissingObject, "/usr/bin"},
		{"missing commit", "bare", func(t *testing.T, e *damageEnv) {
			if err := os.Remove(e.r.objectPath(e.commit, objectCommit)); err != nil {
				t.Fatal(err)
			}
		}, walkAll, errMissingObject, e2s(objectCommit)},
	}
}

func TestDamagedRepo(t *testing.T) {
	for _, tt := range damageCases() {
		t.Run(tt.name, func(t *testing.T) {
			tr := makeRepo(t, tt.mode)
			r, err := OpenRepo(copyRepo(t, tr.path))
			if err != nil {
				t.Fatal(err)
			}
			e := &damageEnv{r: r, commit: tr.commit, entries: map[string]*entry{}}
			_, entries := walkLs(t, r, tr.commit)
			for _, en := range entries {
				e.entries[en.Path] = en
			}
			tt.damage(t, e)
			err = tt.op(e)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.wantMsg) {
				t.Fatalf("error = %v, want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
			}
			if tt.wantErr == errMissingObject && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing object error %v does not wrap fs.ErrNotExist", err)
			}
		})
	}
}

func e2s(t objectType) string { return string(t) }

// repoState records what the no-write test compares: for every path of
// the repository its type, mode, owner, size, mtime, ctime and xattrs,
// plus the atime of regular files. Directories' atime changes on plain
// listing and symlinks' on readlink (no O_NOATIME exists for either):
// both are plain reads, which are allowed.
func repoState(t *testing.T, root string) map[string]string {
	t.Helper()
	state := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		xs, err := readXattrs(p)
		if err != nil {
			return err
		}
		s := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%v ctime=%v xattrs=%v",
			st.Mode, st.Uid, st.Gid, st.Size, st.Mtim, st.Ctim, xs)
		if d.Type().IsRegular() {
			s += fmt.Sprintf(" atime=%v", st.Atim)
		}
		state[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// ageAtimes sets every object file's atime three days back (mtime kept),
// so that a read without O_NOATIME would update it under relatime.
func ageAtimes(t *testing.T, root string) {
	t.Helper()
	old := unix.NsecToTimespec(time.Now().Add(-72 * time.Hour).UnixNano())
	ts := []unix.Timespec{old, {Nsec: unix.UTIME_OMIT}}
	err := filepath.WalkDir(filepath.Join(root, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadsChangeNothing runs every read of this package over a real
// repository and checks nothing changed (metadata, xattrs, atimes of
// objects) and `ostree fsck` still passes.
func TestReadsChangeNothing(t *testing.T) {
	for _, mode := range supportedModes {
		t.Run(mode, func(t *testing.T) {
			tr := makeRepo(t, mode)
			ageAtimes(t, tr.path)
			before := repoState(t, tr.path)
			readEverything(t, tr)
			after := repoState(t, tr.path)
			for p, s := range before {
				if after[p] != s {
					t.Errorf("%s changed:\n before %s\n after  %s", p, s, after[p])
				}
			}
			if len(after) != len(before) {
				t.Errorf("repository has %d paths after reads, %d before", len(after), len(before))
			}
			ostreeCmd(t, "fsck", "--repo="+tr.path)
		})
	}
}

// readEverything exercises every reading entry point on tr.
func readEverything(t *testing.T, tr *testRepo) {
	t.Helper()
	r, err := OpenRepo(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.refs(); err != nil {
		t.Fatal(err)
	}
	_, entries := walkLs(t, r, tr.commit)
	for _, e := range entries {
		if e.Type != typeDir {
			if err := r.verifyFile(e.Checksum); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := r.fileObjects(context.Background(), []checksum{tr.commit}); err != nil {
		t.Fatal(err)
	}
	readIndex(t, r, entries)
}
