package hostlink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func TestOpenRepoConfig(t *testing.T) {
	tests := []struct {
		name     string
		config   string // "" means no config file
		noObjs   bool
		wantMode repoMode
		wantErr  error
		wantMsg  string
	}{
		{name: "bare", config: "[core]\nrepo_version=1\nmode=bare\n", wantMode: modeBare},
		{name: "bare-user", config: "[core]\nrepo_version=1\nmode=bare-user\n", wantMode: modeBareUser},
		{name: "bare-user-only", config: "# c\n[core]\nmode = bare-user-only\n", wantMode: modeBareUserOnly},
		{name: "default mode is bare", config: "[core]\nrepo_version=1\n", wantMode: modeBare},
		{name: "archive", config: "[core]\nmode=archive\n", wantErr: errUnsupportedMode, wantMsg: `"archive"`},
		{name: "archive-z2", config: "[core]\nmode=archive-z2\n", wantErr: errUnsupportedMode, wantMsg: `"archive-z2"`},
		{name: "unknown mode", config: "[core]\nmode=weird\n", wantErr: errUnsupportedMode, wantMsg: "weird"},
		{name: "mode outside core", config: "[other]\nmode=archive\n[core]\n", wantMode: modeBare},
		{name: "no core", config: "[remote \"x\"]\nurl=y\n", wantErr: errNotRepo},
		{name: "repo version 2", config: "[core]\nrepo_version=2\n", wantErr: errNotRepo},
		{name: "no config", wantErr: errNotRepo},
		{name: "no objects", config: "[core]\nmode=bare\n", noObjs: true, wantErr: errNotRepo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != "" {
				if err := os.WriteFile(filepath.Join(dir, "config"), []byte(tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !tt.noObjs {
				if err := os.Mkdir(filepath.Join(dir, "objects"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			r, err := OpenRepo(dir)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.wantMsg) {
					t.Fatalf("OpenRepo error = %v, want %v mentioning %s", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.mode != tt.wantMode {
				t.Errorf("mode = %v, want %v", r.mode, tt.wantMode)
			}
		})
	}
}

func TestOpenRepoRealArchive(t *testing.T) {
	dir := makeRepo(t, "archive").path
	_, err := OpenRepo(dir)
	if !errors.Is(err, errUnsupportedMode) || !strings.Contains(err.Error(), "archive") ||
		!strings.Contains(err.Error(), "compressed") {
		t.Fatalf("OpenRepo(archive) error = %v, want ErrUnsupportedMode naming the mode", err)
	}
}

// lsLine matches one line of `ostree ls -R -C`: type and mode, uid, gid,
// size, checksum (dirtree and dirmeta for directories), path, and a
// symlink's target.
var lsLine = regexp.MustCompile(`^([-dl])([0-7]+) (\d+) (\d+) +(\d+) ([0-9a-f]{64})(?: ([0-9a-f]{64}))? (/.*?)(?: -> (.*))?$`)

// lsEntry renders an entry the way the tests compare them.
func lsEntry(typ byte, mode, uid, gid uint32, size int64, sum, meta, path, target string) string {
	return fmt.Sprintf("%c%05o %d %d %d %s %s %s -> %s", typ, mode, uid, gid, size, sum, meta, path, target)
}

// ostreeLs lists a commit with `ostree ls -R -C`, one rendered line per
// path, in ostree's order.
func ostreeLs(t *testing.T, repo, ref string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(ostreeCmd(t, "ls", "-R", "-C", "--repo="+repo, ref)), "\n") {
		m := lsLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsed ostree ls line %q", line)
		}
		num := func(s string) uint32 {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(n)
		}
		mode, err := strconv.ParseUint(m[2], 8, 32)
		if err != nil {
			t.Fatal(err)
		}
		size, _ := strconv.ParseInt(m[5], 10, 64)
		out = append(out, lsEntry(m[1][0], uint32(mode), num(m[3]), num(m[4]), size, m[6], m[7], m[8], m[9]))
	}
	return out
}

// walkLs lists a commit with Repo.walk, rendered like ostreeLs.
func walkLs(t *testing.T, r *Repo, commit checksum) ([]string, []*entry) {
	t.Helper()
	var out []string
	var entries []*entry
	err := r.walk(context.Background(), commit, func(e *entry) error {
		typ, meta := byte('-'), ""
		switch e.Type {
		case typeDir:
			typ, meta = 'd', e.DirMeta.String()
		case typeSymlink:
			typ = 'l'
		}
		out = append(out, lsEntry(typ, e.Info.Mode&0o7777, e.Info.UID, e.Info.GID, e.Info.Size,
			e.Checksum.String(), meta, e.Path, e.Info.Target))
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return out, entries
}

func TestWalkMatchesOstreeLs(t *testing.T) {
	for _, mode := range supportedModes {
		t.Run(mode, func(t *testing.T) {
			tr := makeRepo(t, mode)
			r, err := OpenRepo(tr.path)
			if err != nil {
				t.Fatal(err)
			}
			want := ostreeLs(t, tr.path, "test")
			got, entries := walkLs(t, r, tr.commit)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("Walk differs from ostree ls -R -C:\n got:\n%s\nwant:\n%s",
					strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if len(got) != len(syntheticTree)+1 {
				t.Errorf("Walk visited %d paths, want %d", len(got), len(syntheticTree)+1)
			}
			checkXattrs(t, mode, entries)
		})
	}
}

// checkXattrs checks xattrs survive where the mode keeps them (bare,
// bare-user), sorted by name, on files and directories. ostree records no
// xattr with an empty value (user.mid).
func checkXattrs(t *testing.T, mode string, entries []*entry) {
	t.Helper()
	byPath := map[string]*entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	render := func(xs []xattr) string {
		var s []string
		for _, x := range xs {
			s = append(s, x.Name+"="+string(x.Value))
		}
		return strings.Join(s, ",")
	}
	wantFile, wantDir := "user.alpha=first,user.zeta=last", "user.dir=1"
	if mode == "bare-user-only" {
		wantFile, wantDir = "", ""
	}
	if got := render(byPath["/etc/attrs"].Info.Xattrs); got != wantFile {
		t.Errorf("/etc/attrs xattrs = %q, want %q", got, wantFile)
	}
	if got := render(byPath["/usr"].Info.Xattrs); got != wantDir {
		t.Errorf("/usr xattrs = %q, want %q", got, wantDir)
	}
}

func TestChecksumFileMatchesNames(t *testing.T) {
	for _, mode := range supportedModes {
		t.Run(mode, func(t *testing.T) {
			tr := makeRepo(t, mode)
			r, err := OpenRepo(tr.path)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			err = r.walk(context.Background(), tr.commit, func(e *entry) error {
				if e.Type == typeDir {
					return nil
				}
				n++
				sum, err := r.checksumFile(e.Checksum)
				if err != nil {
					return err
				}
				if sum != e.Checksum {
					t.Errorf("%s: recomputed checksum %s, object name %s", e.Path, sum, e.Checksum)
				}
				return r.verifyFile(e.Checksum)
			})
			if err != nil {
				t.Fatal(err)
			}
			if n < 10 {
				t.Fatalf("checked only %d files", n)
			}
		})
	}
}

func TestReadCommit(t *testing.T) {
	tr := makeRepo(t, "bare-user")
	r, err := OpenRepo(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := r.readCommit(tr.commit)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Subject != "synthetic" || !cm.Parent.IsZero() || cm.Time.IsZero() {
		t.Errorf("commit = %+v", cm)
	}
	if v, ok := cm.Metadata["ostree.ref-binding"]; !ok || fmt.Sprint(v.Value) != "[test]" {
		t.Errorf("ref-binding metadata = %#v", cm.Metadata)
	}
	// A second commit on the branch has the first as parent.
	out := ostreeCmd(t, "commit", "--repo="+tr.path, "--branch=test", "--tree=dir="+tr.src)
	second, err := parseChecksum(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	cm2, err := r.readCommit(second)
	if err != nil {
		t.Fatal(err)
	}
	if cm2.Parent != tr.commit || cm2.RootTree != cm.RootTree {
		t.Errorf("second commit parent %s root %s, want %s %s", cm2.Parent, cm2.RootTree, tr.commit, cm.RootTree)
	}
}

func TestRefs(t *testing.T) {
	tr := makeRepo(t, "bare")
	ostreeCmd(t, "refs", "--repo="+tr.path, "--create=os/x86_64/stable", "test")
	remoteDir := filepath.Join(tr.path, "refs", "remotes", "origin", "os")
	if err := os.MkdirAll(remoteDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(remoteDir, "main"), []byte(tr.commit.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRepo(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := r.refs()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name, c := range refs {
		names = append(names, name)
		if c != tr.commit {
			t.Errorf("ref %s = %s, want %s", name, c, tr.commit)
		}
	}
	sort.Strings(names)
	if got, want := strings.Join(names, " "), "origin:os/main os/x86_64/stable test"; got != want {
		t.Errorf("refs = %q, want %q", got, want)
	}
	for _, ref := range []string{"test", "os/x86_64/stable", "origin:os/main", tr.commit.String()} {
		if c, err := r.resolveRef(ref); err != nil || c != tr.commit {
			t.Errorf("ResolveRef(%q) = %s, %v", ref, c, err)
		}
	}
	for _, ref := range []string{"nope", "../config", "origin:../../config"} {
		if _, err := r.resolveRef(ref); err == nil {
			t.Errorf("ResolveRef(%q) succeeded", ref)
		}
	}
}

func TestFileObjects(t *testing.T) {
	tr := makeRepo(t, "bare-user")
	r, err := OpenRepo(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	_, entries := walkLs(t, r, tr.commit)
	want := map[checksum]struct{}{}
	for _, e := range entries {
		if e.Type != typeDir {
			want[e.Checksum] = struct{}{}
		}
	}
	got, err := r.fileObjects(context.Background(), []checksum{tr.commit, tr.commit})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("FileObjects = %d objects, want %d", len(got), len(want))
	}
	for c := range want {
		if _, ok := got[c]; !ok {
			t.Errorf("FileObjects misses %s", c)
		}
	}
}

func TestDeployments(t *testing.T) {
	root := t.TempDir()
	c1 := strings.Repeat("ab", 32)
	c2 := strings.Repeat("cd", 32)
	for _, p := range []string{
		"ostree/deploy/fedora/deploy/" + c1 + ".0",
		"ostree/deploy/fedora/deploy/" + c2 + ".1",
		"ostree/deploy/debian/deploy/" + c1 + ".3",
		"ostree/deploy/fedora/deploy/notachecksum.0",
	} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	origin := filepath.Join(root, "ostree/deploy/fedora/deploy/"+c1+".0.origin")
	if err := os.WriteFile(origin, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ds, err := deployments(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s/%s.%d", d.OSName, d.Checksum, d.Serial))
	}
	want := []string{"debian/" + c1 + ".3", "fedora/" + c1 + ".0", "fedora/" + c2 + ".1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Deployments = %v, want %v", got, want)
	}
	if ds, err := deployments(t.TempDir()); err != nil || len(ds) != 0 {
		t.Errorf("empty sysroot: %v, %v", ds, err)
	}
}
