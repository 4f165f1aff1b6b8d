package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"
)

// FuzzIngest feeds arbitrary bytes to Ingest: errors are fine, panics and
// hangs are bugs. Whatever Ingest accepts must survive WriteTar and a
// second Ingest unchanged.
func FuzzIngest(f *testing.F) {
	seeds := [][]entry{
		{dir("etc/"), reg("etc/passwd", "root:x:0:0"), symlink("etc/link", "passwd"), hardlink("etc/hl", "etc/passwd")},
		{reg("a/.wh.b", ""), reg("c/.wh..wh..opq", ""), reg("c/d", strings.Repeat("x", 100))},
		{reg("../escape", "x")},
		{symlink("s", "/etc"), reg("s/passwd", "x")},
		{entryOf(f, "dev/null", tar.TypeChar, 1, 3), entryOf(f, "fifo", tar.TypeFifo, 0, 0)},
	}
	for _, s := range seeds {
		f.Add(mkTar(f, s...))
	}
	f.Add([]byte("not a tar at all"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMemContents()
		tr, _, err := Ingest(context.Background(), bytes.NewReader(data), m, IngestOptions{InlineLimit: 8, MaxFileSize: 1 << 20})
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteTar(context.Background(), &buf, tr, m.open); err != nil {
			t.Fatalf("accepted tree does not write back: %v", err)
		}
		again, _, err := Ingest(context.Background(), &buf, m, IngestOptions{InlineLimit: 8})
		if err != nil {
			t.Fatalf("written tar does not ingest: %v", err)
		}
		if a, b := listingNoMtime(t, tr, m), listingNoMtime(t, again, m); a != b {
			t.Fatalf("tree changed through WriteTar:\n%s\n---\n%s", a, b)
		}
	})
}
