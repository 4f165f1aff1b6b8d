package layers

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/layers/tree"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
)

// impliedLayers are a lower layer with a directory of its own (mode
// 0700, owner 1000, an xattr, mtime 2001) and an upper layer that adds
// files below it and below new paths with no directory entries (the
// implied parents of issue 14: /usr/bin in a container showed 1970).
func impliedLayers(t *testing.T, m *memContents) (lower, upper *tree.Tree) {
	t.Helper()
	a := dir("a/")
	a.hdr.Mode, a.hdr.Uid, a.hdr.Gid, a.hdr.ModTime = 0o700, 1000, 1000, time.Unix(978307200, 0)
	a.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.x": "lower"}
	sub := dir("a/sub/")
	sub.hdr.ModTime = time.Unix(1000000000, 0)
	lower = ingest(t, m, a, reg("a/old", "old"), sub, reg("file-then-dir", "f"))
	newer := reg("n/m/f", "f")
	newer.hdr.ModTime = time.Unix(1710000000, 0)
	upper = ingest(t, m, reg("a/b", "b"), reg("a/sub/.wh.gone", ""), newer, reg("n/x", "x"), reg("file-then-dir/y", "y"))
	return lower, upper
}

func TestIngestMarksImpliedDirs(t *testing.T) {
	m := newMemContents()
	late := dir("late/")
	late.hdr.ModTime = time.Unix(1600000000, 0)
	tr := ingest(t, m, reg("x/y/z", "z"), dir("d/"), reg("d/f", "f"), reg("late/f", "f"), late, reg(".wh.w/f", ""))
	for p, want := range map[string]bool{"x": true, "x/y": true, "d": false, "late": false} {
		n, err := tr.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		if n.IsImplied() != want {
			t.Errorf("%s: implied %v, want %v", p, n.IsImplied(), want)
		}
	}
	// An entry of its own, even after the children, replaces the mark.
	if n, _ := tr.Lookup("late"); n.Mtime.Sec != 1600000000 || len(n.Xattrs) != 0 {
		t.Errorf("late/: %+v", n)
	}
	if tr.Root.IsImplied() {
		t.Error("the root is marked implied")
	}
}

// TestMergeImpliedDirs: an implied directory over a lower directory
// shows mode 0755, owner 0:0 and no xattrs, as overlay shows it (tests/
// TestImpliedDirsMatchOverlay checks that against c/storage's overlay
// driver), with the lower directory's mtime; an implied directory with
// nothing below takes its newest entry's mtime. No mark is left.
func TestMergeImpliedDirs(t *testing.T) {
	m := newMemContents()
	lower, upper := impliedLayers(t, m)
	if err := Merge(lower, upper); err != nil {
		t.Fatal(err)
	}
	FixLinks(lower)
	got := listing(t, lower, m)
	for _, want := range []string{
		"/a 40755 0:0 nlink=2 mtime=978307200\n",
		"/a/sub 40755 0:0 nlink=2 mtime=1000000000\n",
		"/file-then-dir 40755 0:0 nlink=2 mtime=1700000000\n",
		"/n 40755 0:0 nlink=2 mtime=1710000000\n",
		"/n/m 40755 0:0 nlink=2 mtime=1710000000\n",
	} {
		if !strings.Contains(got+"\n", want) {
			t.Errorf("merged tree lacks %q:\n%s", want, got)
		}
	}
	_, below, _ := strings.Cut(got, "\n") // the root: a layer's, set by the driver
	if strings.Contains(below, "mtime=0") || strings.Contains(got, "implied") || strings.Contains(got, "user.x") {
		t.Errorf("merged tree has a 1970 mtime, a mark or the lower's xattr:\n%s", got)
	}
}

// TestWriteTarLeavesImpliedDirsOut: a layer's tar has no entry for a
// directory its source tar had none for (an entry would carry mtime 0
// and override the lower directory's metadata when applied), and
// ingests back to the same tree.
func TestWriteTarLeavesImpliedDirsOut(t *testing.T) {
	m := newMemContents()
	_, upper := impliedLayers(t, m)
	var buf bytes.Buffer
	if err := WriteTar(context.Background(), &buf, upper, m.open); err != nil {
		t.Fatal(err)
	}
	hs, err := tarfix.Headers(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
		if _, ok := h.PAXRecords["SCHILY.xattr."+tree.ImpliedXattr]; ok {
			t.Errorf("%s carries the implied mark", h.Name)
		}
	}
	want := "a/b a/sub/.wh.gone file-then-dir/y n/m/f n/x"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("tar entries %q, want %q", got, want)
	}
	again, _, err := Ingest(context.Background(), &buf, m, IngestOptions{InlineLimit: 8})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := listing(t, upper, m), listing(t, again, m); a != b {
		t.Errorf("tree changed through WriteTar:\n--- before\n%s\n--- after\n%s", a, b)
	}
}

// TestComposeImpliedOverOwnDir: folding a layer whose directory is
// implied into one that has the directory of its own gives what the two
// show stacked: the upper's mode, the lower's mtime, a directory of its
// own (no mark).
func TestComposeImpliedOverOwnDir(t *testing.T) {
	m := newMemContents()
	lower, upper := impliedLayers(t, m)
	if err := Compose(lower, upper); err != nil {
		t.Fatal(err)
	}
	a, err := lower.Lookup("a")
	if err != nil {
		t.Fatal(err)
	}
	if a.IsImplied() || a.Mode != tree.TypeDir|0o755 || a.UID != 0 || a.Mtime.Sec != 978307200 || len(a.Xattrs) != 0 {
		t.Errorf("a: %+v", a)
	}
	if n, _ := lower.Lookup("n/m"); n == nil || !n.IsImplied() {
		t.Errorf("n/m: no longer implied: %+v", n)
	}
}
