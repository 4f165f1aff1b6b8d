package layers

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

func TestMerge(t *testing.T) {
	m := newMemContents()
	base := ingest(t, m,
		dir("etc/"), reg("etc/passwd", "root:x:0:0"), reg("etc/group", "root:x:0:"),
		dir("usr/lib/"), reg("usr/lib/a.so", "AAAAAAAAAAAA"), reg("usr/lib/b.so", "BBBBBBBBBBBB"),
		dir("opq/"), reg("opq/old", "old"), dir("opq/sub/"), reg("opq/sub/deep", "deep"),
		dir("becomes-file/"), reg("becomes-file/x", "x"),
		reg("becomes-dir", "was a file"),
		reg("linked", "shared content"), hardlink("link2", "linked"),
	)
	top := ingest(t, m,
		reg("etc/.wh.group", ""), reg("etc/passwd", "root:x:0:0:changed"),
		reg("usr/lib/.wh.b.so", ""), reg("usr/lib/c.so", "CCCCCCCCCCCC"),
		reg("opq/.wh..wh..opq", ""), reg("opq/new", "new"), reg("opq/.wh.never-there", ""),
		reg("becomes-file", "now a file"), reg("becomes-file/.wh.x", ""),
		dir("becomes-dir/"), reg("becomes-dir/inner", "in"),
		reg(".wh.linked", ""),
		reg(".wh.not-in-lower", ""),
	)
	if err := Merge(base, top); err != nil {
		t.Fatal(err)
	}
	FixLinks(base)
	want := []string{
		"/ 40755", "/becomes-dir 40755", `/becomes-dir/inner 100644 size=2 "in"`,
		`/becomes-file 100644 size=10 "ext:now a file"`,
		"/etc 40755", `/etc/passwd 100644 size=18 "ext:root:x:0:0:changed"`,
		`/link2 100644 nlink=1 size=14 "ext:shared content"`,
		"/opq 40755", `/opq/new 100644 size=3 "new"`,
		"/usr 40755", "/usr/lib 40755", `/usr/lib/a.so 100644 size=12 "ext:AAAAAAAAAAAA"`, `/usr/lib/c.so 100644 size=12 "ext:CCCCCCCCCCCC"`,
	}
	got := listing(t, base, m)
	lines := strings.Split(got, "\n")
	if len(lines) != len(want) {
		t.Fatalf("merged tree has %d entries, want %d:\n%s", len(lines), len(want), got)
	}
	for i, w := range want {
		fields := strings.Fields(w)
		for _, f := range fields {
			if !strings.Contains(lines[i], f) {
				t.Errorf("entry %d = %q, want it to contain %q", i, lines[i], f)
			}
		}
	}
	if strings.Contains(got, "trusted.overlay.opaque") {
		t.Errorf("opaque marker left in merged tree:\n%s", got)
	}
	// The hard link's primary was whited out: the remaining entry is primary.
	e, _ := base.Root.Entry("link2")
	if e.HardLink {
		t.Errorf("remaining hard link entry still marked secondary")
	}
}

func TestMergeOpaqueRoot(t *testing.T) {
	m := newMemContents()
	base := ingest(t, m, reg("a", "a"), reg("b", "b"))
	top := ingest(t, m, reg(".wh..wh..opq", ""), reg("c", "c"))
	if err := Merge(base, top); err != nil {
		t.Fatal(err)
	}
	if base.Root.NumEntries() != 1 || base.Root.Child("c") == nil {
		t.Fatalf("opaque root kept lower entries:\n%s", listing(t, base, m))
	}
}

func TestFixLinksPrimaryAndNlink(t *testing.T) {
	tr := tree.New()
	n := &tree.Node{Mode: tree.TypeReg | 0o644, Size: 1, Content: []byte("x")}
	for _, name := range []string{"c", "a", "b"} {
		if err := tr.Root.Insert(tree.Dirent{Name: name, Node: n, HardLink: name != "c"}); err != nil {
			t.Fatal(err)
		}
	}
	FixLinks(tr)
	for _, e := range tr.Root.Entries() {
		if e.HardLink != (e.Name != "a") {
			t.Errorf("%s: HardLink=%v; want only the first in walk order (a) primary", e.Name, e.HardLink)
		}
	}
	if n.Nlink != 3 {
		t.Errorf("nlink %d, want 3", n.Nlink)
	}
}

func TestWriteTarRoundTrip(t *testing.T) {
	m := newMemContents()
	attr := reg("bin/ping", "ping-binary-content")
	attr.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01\x02", "SCHILY.xattr.user.x": "y"}
	orig := ingest(t, m,
		dir("bin/"), attr, reg("bin/tiny", "t"), hardlink("bin/ping2", "bin/ping"), symlink("bin/sh", "bash"),
		reg("etc/.wh.gone", ""), reg("opq/.wh..wh..opq", ""), reg("opq/f", "ffffffffffffff"),
		reg(strings.Repeat("long", 60), "long name"),
		entryOf(t, "dev/null", '3', 1, 3), entryOf(t, "dev/loop0", '4', 7, 0), entryOf(t, "fifo", '6', 0, 0),
	)
	var buf bytes.Buffer
	if err := WriteTar(context.Background(), &buf, orig, m.open); err != nil {
		t.Fatal(err)
	}
	again, _, err := Ingest(context.Background(), &buf, m, IngestOptions{InlineLimit: 8})
	if err != nil {
		t.Fatalf("re-ingest: %v", err)
	}
	if a, b := listing(t, orig, m), listing(t, again, m); a != b {
		t.Fatalf("tree changed through WriteTar:\n--- before\n%s\n--- after\n%s", a, b)
	}
}
