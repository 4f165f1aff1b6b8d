package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// names lists dir's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// record replaces the flush seams with ones that log their calls, and
// fail with fail[name] if set.
func record(t *testing.T, fail map[string]error) *[]string {
	t.Helper()
	var calls []string
	oldSync, oldData, oldDir := fsync, fdatasync, syncDir
	t.Cleanup(func() { fsync, fdatasync, syncDir = oldSync, oldData, oldDir })
	fsync = func(f *os.File) error {
		calls = append(calls, "fsync")
		if err := fail["fsync"]; err != nil {
			return err
		}
		return oldSync(f)
	}
	fdatasync = func(f *os.File) error {
		calls = append(calls, "fdatasync")
		if err := fail["fdatasync"]; err != nil {
			return err
		}
		return oldData(f)
	}
	syncDir = func(dir string) error {
		calls = append(calls, "syncdir "+filepath.Base(dir))
		if err := fail["syncdir"]; err != nil {
			return err
		}
		return oldDir(dir)
	}
	return &calls
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	calls := record(t, nil)
	if err := WriteFile(p, []byte("one"), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), Options{Perm: 0o640}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "two" {
		t.Fatalf("content %q, %v; want two", got, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, %v; want 0640", st.Mode(), err)
	}
	if n := names(t, dir); !slices.Equal(n, []string{"f"}) {
		t.Errorf("directory holds %q, want only f", n)
	}
	if want := []string{"fsync", "fsync"}; !slices.Equal(*calls, want) {
		t.Errorf("flushes %q, want %q (default: fsync, no directory sync)", *calls, want)
	}
}

func TestWriteFlushModes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		o    Options
		want []string
	}{
		{Options{Flush: FlushData, SyncDir: true}, []string{"fdatasync", "syncdir " + filepath.Base(dir)}},
		{Options{Flush: FlushNone}, nil},
		{Options{Flush: FlushNone, SyncDir: true}, []string{"syncdir " + filepath.Base(dir)}},
	} {
		calls := record(t, nil)
		if err := WriteFile(filepath.Join(dir, "f"), []byte("x"), tc.o); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(*calls, tc.want) {
			t.Errorf("%+v: flushes %q, want %q", tc.o, *calls, tc.want)
		}
	}
	if err := WriteFile(filepath.Join(dir, "f"), nil, Options{Flush: Flush(42)}); err == nil {
		t.Error("unknown flush mode accepted")
	}
	if n := names(t, dir); !slices.Equal(n, []string{"f"}) {
		t.Errorf("directory holds %q, want only f", n)
	}
}

// TestWriteFailureKeepsOld checks that a failure at each step before the
// rename leaves the old content and no temporary file.
func TestWriteFailureKeepsOld(t *testing.T) {
	boom := errors.New("boom")
	for _, step := range []string{"write", "fsync", "before"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			fail := map[string]error{}
			if step == "fsync" {
				fail["fsync"] = boom
			}
			record(t, fail)
			o := Options{SyncDir: true}
			if step == "before" {
				o.BeforeRename = func(string) error { return boom }
			}
			err := Write(p, o, func(w io.Writer) error {
				if _, err := io.WriteString(w, "new, partly"); err != nil {
					return err
				}
				if step == "write" {
					return boom
				}
				return nil
			})
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v: want one naming %s and wrapping boom", err, p)
			}
			if got, _ := os.ReadFile(p); string(got) != "old" {
				t.Errorf("content %q after a failed write, want old", got)
			}
			if n := names(t, dir); !slices.Equal(n, []string{"f"}) {
				t.Errorf("directory holds %q after a failed write, want only f", n)
			}
		})
	}
}

// TestBeforeRename checks the hook sees the complete temporary file,
// named by the pattern, while the target is still the old one.
func TestBeforeRename(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ pattern, prefix string }{{"", ".tmp-state-"}, {".scan-*", ".scan-"}} {
		called := false
		err := WriteFile(p, []byte("new"), Options{Pattern: tc.pattern, BeforeRename: func(tmp string) error {
			called = true
			if filepath.Dir(tmp) != dir || !strings.HasPrefix(filepath.Base(tmp), tc.prefix) {
				t.Errorf("temporary file %s, want %s/%s*", tmp, dir, tc.prefix)
			}
			if b, err := os.ReadFile(tmp); err != nil || string(b) != "new" {
				t.Errorf("temporary file holds %q, %v before the rename", b, err)
			}
			if b, _ := os.ReadFile(p); string(b) != "old" && string(b) != "new" {
				t.Errorf("target holds %q before the rename", b)
			}
			return nil
		}})
		if err != nil || !called {
			t.Fatalf("pattern %q: %v, hook called %v", tc.pattern, err, called)
		}
	}
}

// TestSyncDirError checks a failed directory sync is reported, after the
// rename (the new content is in place, but maybe not durably).
func TestSyncDirError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	boom := errors.New("boom")
	record(t, map[string]error{"syncdir": boom})
	if err := WriteFile(p, []byte("new"), Options{SyncDir: true}); !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "new" {
		t.Errorf("content %q, want new", got)
	}
}

func TestWriteNoDirectory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "f")
	if err := WriteFile(p, []byte("x"), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v, want ErrNotExist", err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	var pe *fs.PathError
	if err := SyncDir(missing); !errors.As(err, &pe) || pe.Path != missing {
		t.Fatalf("error %v, want a PathError naming %s", err, missing)
	}
}
