package hostlink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// checksummedRepo writes a bare repository by hand whose objects carry
// their true ostree names (header from the written file's own stat and
// xattrs), so that LookupContent can prove them; no root or ostree
// needed. It returns the names by key.
func checksummedRepo(t *testing.T, objects map[string]string, modes map[string]uint32) (*Repo, map[string]checksum) {
	t.Helper()
	r, _ := fakeRepo(t, nil)
	names := map[string]checksum{}
	for key, content := range objects {
		tmp := filepath.Join(r.path, "tmp-"+key)
		mode := uint32(0o644)
		if m, ok := modes[key]; ok {
			mode = m
		}
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(tmp, mode); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(tmp, &st); err != nil {
			t.Fatal(err)
		}
		fi, err := r.fileInfoFromStat(tmp, &st)
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := r.fileHeader(fi)
		if err != nil {
			t.Fatal(err)
		}
		c, err := checksumContent(string(hdr), bytes.NewReader([]byte(content)), int64(len(content)))
		if err != nil {
			t.Fatal(err)
		}
		names[key] = c
		p := r.fileObjectPath(c)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
		if err := r.verifyFile(c); err != nil {
			t.Fatalf("hand-made object %s: %v", key, err)
		}
	}
	return r, names
}

func lookupContent(t *testing.T, ix *Index, content string) (string, bool) {
	t.Helper()
	p, ok, err := ix.LookupContent(context.Background(), int64(len(content)), sha256.Sum256([]byte(content)), bytes.NewReader([]byte(content)))
	if err != nil {
		t.Fatalf("LookupContent(%q): %v", content, err)
	}
	return p, ok
}

// LookupContent proves candidates by their ostree checksum: equal
// contents under different headers (modes) are found, other contents of
// the same size are not, no object is hashed, and what was learnt is
// matched by digest alone by the next index on the same cache.
func TestLookupContent(t *testing.T) {
	objects := map[string]string{"a": "alpha", "a-exec": "alpha", "b": "bravo", "long": "a longer content, alone"}
	r, _ := checksummedRepo(t, objects, map[string]uint32{"a-exec": 0o755})
	cache := t.TempDir()
	h := &countingHash{}
	ix := newTestIndex(t, r, cache, h)
	for _, content := range []string{"alpha", "bravo", "a longer content, alone"} {
		p, ok := lookupContent(t, ix, content)
		if !ok {
			t.Fatalf("%q not found", content)
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != content {
			t.Fatalf("%q: found %s holding %q (%v)", content, p, got, err)
		}
	}
	if p, ok := lookupContent(t, ix, "charl"); ok {
		t.Fatalf("content absent from the host found at %s", p)
	}
	if p, ok := lookupContent(t, ix, "nothing of this size"); ok {
		t.Fatalf("content of a size absent from the host found at %s", p)
	}
	if n := h.n.Load(); n != 0 {
		t.Fatalf("LookupContent hashed %d objects; it must only checksum the content", n)
	}
	if s := ix.stats(); s.Headers == 0 || s.Headers > len(objects) {
		t.Fatalf("stats %+v: want the headers of the candidates read", s)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}

	again := newTestIndex(t, r, cache, h)
	for _, content := range []string{"alpha", "bravo"} {
		if _, ok := lookupContent(t, again, content); !ok {
			t.Fatalf("%q not found by the second index", content)
		}
	}
	if s := again.stats(); s.Headers != 0 {
		t.Fatalf("second index read %d headers; the saved digests should have matched", s.Headers)
	}
}

// An object whose name is not the checksum of its header and content (a
// damaged object, or a fake) is never offered, even when its bytes are
// the content looked up.
func TestLookupContentUnprovenObject(t *testing.T) {
	r, _ := fakeRepo(t, map[string]string{"x": "xenon"})
	ix := newTestIndex(t, r, t.TempDir(), &countingHash{})
	if p, ok := lookupContent(t, ix, "xenon"); ok {
		t.Fatalf("object with a wrong name offered: %s", p)
	}
}

// An object removed after the cheap pass is forgotten, not an error.
func TestLookupContentVanishedObject(t *testing.T) {
	r, names := checksummedRepo(t, map[string]string{"a": "alpha", "b": "alpha"}, map[string]uint32{"b": 0o600})
	ix := newTestIndex(t, r, t.TempDir(), &countingHash{})
	first, other := names["a"], names["b"] // candidates are tried in name order
	if bytes.Compare(other[:], first[:]) < 0 {
		first, other = other, first
	}
	if err := os.Remove(r.fileObjectPath(first)); err != nil {
		t.Fatal(err)
	}
	p, ok := lookupContent(t, ix, "alpha")
	if !ok || p != r.fileObjectPath(other) {
		t.Fatalf("LookupContent = %s, %v; want the remaining object", p, ok)
	}
	if s := ix.stats(); s.Objects != 1 {
		t.Fatalf("stats %+v: the vanished object should be forgotten", s)
	}
}

// On a real repository of each mode, every regular file is found by
// content without reading any object, and bare-user symlink objects
// (stored as files holding the target) never are.
func TestLookupContentRealRepo(t *testing.T) {
	for _, mode := range supportedModes {
		t.Run(mode, func(t *testing.T) {
			r, entries := realRepoEntries(t, mode)
			h := &countingHash{}
			ix := newTestIndex(t, r, t.TempDir(), h)
			lookupEach(t, r, entries, func(data []byte) (string, bool, error) {
				return ix.LookupContent(context.Background(), int64(len(data)), sha256.Sum256(data), bytes.NewReader(data))
			})
			if n := h.n.Load(); n != 0 {
				t.Errorf("%d objects hashed", n)
			}
		})
	}
}
