package hostlink

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeRepo writes a bare repository by hand (no ostree needed): a config
// and the given file objects, named by SHA-256 of "name:<key>" since the
// index never checks names against content.
func fakeRepo(t testing.TB, objects map[string]string) (*Repo, map[string]checksum) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("[core]\nrepo_version=1\nmode=bare\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]checksum{}
	for key, content := range objects {
		c := checksum(sha256.Sum256([]byte("name:" + key)))
		names[key] = c
		p := r.fileObjectPath(c)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return r, names
}

// countingHash is SHA-256 as a stand-in for the fs-verity digest,
// counting how many objects it hashed, optionally slowed down.
type countingHash struct {
	n     atomic.Int64
	delay time.Duration
}

func (h *countingHash) hash(r io.Reader) ([32]byte, error) {
	h.n.Add(1)
	time.Sleep(h.delay)
	s := sha256.New()
	if _, err := io.Copy(s, r); err != nil {
		return [32]byte{}, err
	}
	var d [32]byte
	s.Sum(d[:0])
	return d, nil
}

func newTestIndex(t *testing.T, r *Repo, cacheDir string, h *countingHash) *Index {
	t.Helper()
	ix, err := NewIndex(context.Background(), r, IndexOptions{CacheDir: cacheDir, Hash: h.hash, HashName: "sha256-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// sampleObjects has contents of shared and unique sizes, and duplicate
// contents under different names (as host objects with equal content and
// different metadata are).
var sampleObjects = map[string]string{
	"a": "alpha", "b": "bravo", "c": "charl", // same size 5
	"d": "delta-long", "e": "alpha", // e duplicates a's content
	"f": "", "g": "a much longer content that nobody shares",
}

func TestIndexLookup(t *testing.T) {
	r, names := fakeRepo(t, sampleObjects)
	h := &countingHash{}
	ix := newTestIndex(t, r, t.TempDir(), h)
	if s := ix.stats(); s.Objects != len(sampleObjects) || s.Hashed != 0 || h.n.Load() != 0 {
		t.Fatalf("after build: stats %+v, %d hashes; want %d objects, nothing hashed", s, h.n.Load(), len(sampleObjects))
	}
	tests := []struct {
		name    string
		content string
		size    int64 // -1: len(content)
		want    []string
	}{
		{"unique size", "delta-long", -1, []string{"d"}},
		{"shared size", "charl", -1, []string{"c"}},
		{"duplicate content", "alpha", -1, []string{"a", "e"}},
		{"empty", "", -1, []string{"f"}},
		{"size present, content absent", "zulus", -1, nil},
		{"size absent", "nothing of this size", -1, nil},
		{"wrong size for content", "alpha", 6, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := tt.size
			if size < 0 {
				size = int64(len(tt.content))
			}
			sum := sha256.Sum256([]byte(tt.content))
			for _, lookup := range []func(context.Context, int64, [32]byte) (string, bool, error){ix.lookupDigest, ix.lookupSHA256} {
				p, ok, err := lookup(context.Background(), size, sum)
				if err != nil {
					t.Fatal(err)
				}
				if ok != (tt.want != nil) {
					t.Fatalf("found = %v (%s), want %v", ok, p, tt.want != nil)
				}
				if !ok {
					continue
				}
				if !pathIsOneOf(r, p, names, tt.want) {
					t.Errorf("Lookup = %s, want one of %v", p, tt.want)
				}
				if data, err := os.ReadFile(p); err != nil || string(data) != tt.content {
					t.Errorf("object content %q, %v; want %q", data, err, tt.content)
				}
			}
		})
	}
	// Every object of a looked-up size was hashed exactly once, however
	// many lookups asked; "g" (a size never asked) never.
	if got := h.n.Load(); got != int64(len(sampleObjects)-1) {
		t.Errorf("hashed %d objects, want %d", got, len(sampleObjects)-1)
	}
	if s := ix.stats(); s.Hashed != int(h.n.Load()) || s.Cached != s.Hashed {
		t.Errorf("stats %+v disagree with %d hashes", s, h.n.Load())
	}
}

func pathIsOneOf(r *Repo, p string, names map[string]checksum, keys []string) bool {
	for _, k := range keys {
		if r.fileObjectPath(names[k]) == p {
			return true
		}
	}
	return false
}

// lookupAll looks up every sample content and returns how many matched;
// it then asks for an absent content of every sample size, so that every
// object has been hashed (or found in the cache) once it returns.
func lookupAll(t *testing.T, ix *Index) int {
	t.Helper()
	defer func() {
		for _, content := range sampleObjects {
			if _, ok, err := ix.lookupDigest(context.Background(), int64(len(content)), [32]byte{}); ok || err != nil {
				t.Fatalf("absent content found: %v, %v", ok, err)
			}
		}
	}()
	found := 0
	for _, content := range sampleObjects {
		_, ok, err := ix.lookupDigest(context.Background(), int64(len(content)), sha256.Sum256([]byte(content)))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			found++
		}
	}
	return found
}

func TestIndexNeverHashesTwice(t *testing.T) {
	r, _ := fakeRepo(t, sampleObjects)
	cacheDir := t.TempDir()
	h := &countingHash{}
	if got := lookupAll(t, newTestIndex(t, r, cacheDir, h)); got != len(sampleObjects) {
		t.Fatalf("found %d of %d", got, len(sampleObjects))
	}
	first := h.n.Load()
	// A new Index (as another process would) reuses the cache on disk.
	ix2 := newTestIndex(t, r, cacheDir, h)
	if got := lookupAll(t, ix2); got != len(sampleObjects) || h.n.Load() != first {
		t.Errorf("second index found %d and hashed %d more", got, h.n.Load()-first)
	}
	// Another hash name never sees these digests.
	h3 := &countingHash{}
	ix3, err := NewIndex(context.Background(), r, IndexOptions{CacheDir: cacheDir, Hash: h3.hash, HashName: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer ix3.Close()
	if ix3.stats().Cached != 0 {
		t.Errorf("index with another hash name sees %d cached digests", ix3.stats().Cached)
	}
}

// TestIndexConcurrentInstances runs lookups from several Index instances
// over one cache at once (each has its own lock descriptor, as separate
// processes do): together they hash every object once.
func TestIndexConcurrentInstances(t *testing.T) {
	r, _ := fakeRepo(t, sampleObjects)
	cacheDir := t.TempDir()
	h := &countingHash{}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		ix := newTestIndex(t, r, cacheDir, h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, content := range sampleObjects {
				if _, _, err := ix.lookupDigest(context.Background(), int64(len(content)), sha256.Sum256([]byte(content))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got := h.n.Load(); got != int64(len(sampleObjects)) {
		t.Errorf("%d hashes by 4 instances, want %d", got, len(sampleObjects))
	}
}

func TestIndexPrunedObjects(t *testing.T) {
	r, names := fakeRepo(t, sampleObjects)
	cacheDir := t.TempDir()
	h := &countingHash{}
	ix := newTestIndex(t, r, cacheDir, h)
	lookupAll(t, ix)
	// "prune" d (unique content) and a (whose content e also has).
	for _, k := range []string{"d", "a"} {
		if err := os.Remove(r.fileObjectPath(names[k])); err != nil {
			t.Fatal(err)
		}
	}
	// The live index notices at lookup time.
	if p, ok, err := ix.lookupDigest(context.Background(), 10, sha256.Sum256([]byte("delta-long"))); ok || err != nil {
		t.Errorf("pruned object still found: %s, %v", p, err)
	}
	p, ok, err := ix.lookupDigest(context.Background(), 5, sha256.Sum256([]byte("alpha")))
	if !ok || err != nil || p != r.fileObjectPath(names["e"]) {
		t.Errorf("alpha = %s, %v, %v; want object e", p, ok, err)
	}
	// A new index drops both from the cache file, hashing nothing.
	before := h.n.Load()
	ix2 := newTestIndex(t, r, cacheDir, h)
	if s := ix2.stats(); s.Dropped != 2 || s.Cached != len(sampleObjects)-2 || s.Objects != len(sampleObjects)-2 {
		t.Errorf("after prune: stats %+v", s)
	}
	if got := lookupAll(t, ix2); got != len(sampleObjects)-1 || h.n.Load() != before {
		t.Errorf("after prune: found %d, hashed %d more", got, h.n.Load()-before)
	}
}

func TestIndexDamagedCacheFile(t *testing.T) {
	tests := []struct {
		name       string
		damage     func(data []byte) []byte
		wantRehash int64
	}{
		{"torn last record", func(d []byte) []byte { return d[:len(d)-10] }, 1},
		{"flipped byte in a record", func(d []byte) []byte { d[recSize+50] ^= 1; return d }, 1},
		{"bad header", func(d []byte) []byte { d[0] ^= 1; return d }, int64(len(sampleObjects))},
		{"garbage", func([]byte) []byte { return []byte("not a cache") }, int64(len(sampleObjects))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := fakeRepo(t, sampleObjects)
			cacheDir := t.TempDir()
			h := &countingHash{}
			lookupAll(t, newTestIndex(t, r, cacheDir, h))
			p := filepath.Join(cacheDir, "digests-sha256-test.v1")
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tt.damage(data), 0o600); err != nil {
				t.Fatal(err)
			}
			before := h.n.Load()
			ix := newTestIndex(t, r, cacheDir, h)
			if got := lookupAll(t, ix); got != len(sampleObjects) {
				t.Fatalf("found %d of %d", got, len(sampleObjects))
			}
			if got := h.n.Load() - before; got != tt.wantRehash {
				t.Errorf("rehashed %d objects, want %d", got, tt.wantRehash)
			}
			// And the repaired cache serves a third index fully.
			before = h.n.Load()
			lookupAll(t, newTestIndex(t, r, cacheDir, h))
			if h.n.Load() != before {
				t.Errorf("third index hashed %d objects", h.n.Load()-before)
			}
		})
	}
}

func TestIndexOptions(t *testing.T) {
	r, names := fakeRepo(t, sampleObjects)
	h := &countingHash{}
	tests := []struct {
		name    string
		opts    IndexOptions
		wantErr error
		objects int
	}{
		{"cache inside repo", IndexOptions{CacheDir: filepath.Join(r.path, "cache"), Hash: h.hash, HashName: "x"}, errCacheInRepo, 0},
		{"cache is repo", IndexOptions{CacheDir: r.path, Hash: h.hash, HashName: "x"}, errCacheInRepo, 0},
		{"no hash", IndexOptions{CacheDir: t.TempDir(), HashName: "x"}, errInvalidOptions, 0},
		{"bad hash name", IndexOptions{CacheDir: t.TempDir(), Hash: h.hash, HashName: "../x"}, errInvalidOptions, 0},
		{"min size", IndexOptions{CacheDir: t.TempDir(), Hash: h.hash, HashName: "x", MinSize: 6}, nil, 2},
		{"only", IndexOptions{CacheDir: t.TempDir(), Hash: h.hash, HashName: "x",
			only: map[checksum]struct{}{names["a"]: {}, names["g"]: {}}}, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix, err := NewIndex(context.Background(), r, tt.opts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("NewIndex error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer ix.Close()
			if got := ix.stats().Objects; got != tt.objects {
				t.Errorf("%d candidate objects, want %d", got, tt.objects)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(r.path, "cache")); !os.IsNotExist(err) {
		t.Errorf("cache directory created inside the repository: %v", err)
	}
}

// TestIndexRealRepo indexes real repositories of every mode: every
// regular file's content is found, and a bare-user symlink object (a
// regular file holding the target) is never offered as content.
func TestIndexRealRepo(t *testing.T) {
	for _, mode := range supportedModes {
		t.Run(mode, func(t *testing.T) {
			r, entries := realRepoEntries(t, mode)
			readIndex(t, r, entries)
		})
	}
}

// realRepoEntries commits the synthetic tree to a new repository of the
// given mode (with Debian's ostree) and returns it opened, with the
// entries of the commit.
func realRepoEntries(t *testing.T, mode string) (*Repo, []*entry) {
	t.Helper()
	tr := makeRepo(t, mode)
	r, err := OpenRepo(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	_, entries := walkLs(t, r, tr.commit)
	return r, entries
}

// readIndex builds a content index over r (cache outside the repository)
// and looks up every regular file of entries by content with lookupDigest.
func readIndex(t *testing.T, r *Repo, entries []*entry) {
	t.Helper()
	ix := newTestIndex(t, r, t.TempDir(), &countingHash{})
	lookupEach(t, r, entries, func(data []byte) (string, bool, error) {
		return ix.lookupDigest(context.Background(), int64(len(data)), sha256.Sum256(data))
	})
	if s := ix.stats(); s.Hashed == 0 || s.Hashed > s.Objects {
		t.Errorf("index stats %+v", s)
	}
}

// lookupEach looks up, through find, the content of every regular file
// of entries, which must be found, and the content of every symlink
// object as bare-user stores it, which must not match.
func lookupEach(t *testing.T, r *Repo, entries []*entry, find func(data []byte) (string, bool, error)) {
	t.Helper()
	for _, e := range entries {
		switch e.Type {
		case typeRegular:
			data, err := readFileNoatime(r.fileObjectPath(e.Checksum))
			if err != nil {
				t.Fatal(err)
			}
			p, ok, err := find(data)
			if err != nil || !ok {
				t.Fatalf("%s: not found (%v)", e.Path, err)
			}
			if got, _ := readFileNoatime(p); string(got) != string(data) {
				t.Errorf("%s: found %s with other content", e.Path, p)
			}
		case typeSymlink:
			stored := e.Info.Target + "\x00"
			if p, ok, err := find([]byte(stored)); err != nil || ok {
				t.Errorf("%s: symlink object offered as content: %s, %v", e.Path, p, err)
			}
		}
	}
}

// An index built with NoSHA256 finds contents by its digest alone and
// refuses lookups by SHA-256.
func TestIndexNoSHA256(t *testing.T) {
	r, names := fakeRepo(t, sampleObjects)
	h := &countingHash{}
	ix, err := NewIndex(context.Background(), r, IndexOptions{CacheDir: t.TempDir(), Hash: h.hash, HashName: "sha256-only", NoSHA256: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	sum := sha256.Sum256([]byte("delta-long"))
	p, ok, err := ix.lookupDigest(context.Background(), int64(len("delta-long")), sum)
	if err != nil || !ok || !pathIsOneOf(r, p, names, []string{"d"}) {
		t.Fatalf("Lookup = %s, %v, %v; want object d", p, ok, err)
	}
	if _, _, err := ix.lookupSHA256(context.Background(), int64(len("delta-long")), sum); !errors.Is(err, errInvalidOptions) {
		t.Fatalf("LookupSHA256 on a NoSHA256 index: err = %v, want ErrInvalidOptions", err)
	}
}

// Lookups from many goroutines at once find every content and still
// hash each object once: lookups of one size wait for each other, other
// sizes hash in parallel.
func TestIndexParallelLookups(t *testing.T) {
	r, names := fakeRepo(t, sampleObjects)
	h := &countingHash{delay: 5 * time.Millisecond}
	ix := newTestIndex(t, r, t.TempDir(), h)
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(sampleObjects))
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name, content := range sampleObjects {
				p, ok, err := ix.lookupDigest(context.Background(), int64(len(content)), sha256.Sum256([]byte(content)))
				if err != nil || !ok {
					errs <- fmt.Errorf("%s: found %v, %v", name, ok, err)
					continue
				}
				if data, _ := os.ReadFile(p); string(data) != content {
					errs <- fmt.Errorf("%s: found an object holding %q", name, data)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := h.n.Load(); got > int64(len(names)) {
		t.Fatalf("%d hashes for %d objects: some object was hashed twice", got, len(names))
	}
}

// TestIndexContents checks that Contents reports every object with its
// content's SHA-256, hashing each once, and that a second Index over the
// same cache reports them without hashing.
func TestIndexContents(t *testing.T) {
	r, names := fakeRepo(t, sampleObjects)
	cacheDir := t.TempDir()
	for round, wantHashed := range []int64{int64(len(sampleObjects)), 0} {
		h := &countingHash{}
		ix := newTestIndex(t, r, cacheDir, h)
		got := map[string][32]byte{}
		if err := ix.Contents(context.Background(), func(p string, size int64, sha [32]byte) error {
			got[p] = sha
			if data, err := os.ReadFile(p); err != nil || int64(len(data)) != size {
				t.Errorf("round %d: %s: size %d, read %d bytes (%v)", round, p, size, len(data), err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for k, content := range sampleObjects {
			p := r.fileObjectPath(names[k])
			if sha, ok := got[p]; !ok || sha != sha256.Sum256([]byte(content)) {
				t.Errorf("round %d: object %s: reported %v (%x)", round, k, ok, sha)
			}
		}
		if len(got) != len(sampleObjects) {
			t.Errorf("round %d: %d objects reported, want %d", round, len(got), len(sampleObjects))
		}
		if n := h.n.Load(); n != wantHashed {
			t.Errorf("round %d: hashed %d objects, want %d", round, n, wantHashed)
		}
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// An index with NoSHA256: lookups hash without the SHA-256, so
	// Contents reads every object once more, then never again.
	noSHADir := t.TempDir()
	for round, wantHashed := range []int64{int64(len(sampleObjects)), int64(len(sampleObjects)), 0} {
		h := &countingHash{}
		ix, err := NewIndex(context.Background(), r, IndexOptions{CacheDir: noSHADir, Hash: h.hash, HashName: "sha256-test", NoSHA256: true})
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			lookupAll(t, ix)
		} else {
			n := 0
			if err := ix.Contents(context.Background(), func(p string, _ int64, sha [32]byte) error {
				data, err := os.ReadFile(p)
				if err != nil || sha != sha256.Sum256(data) {
					t.Errorf("NoSHA256 round %d: %s reported with a wrong SHA-256 (%v)", round, p, err)
				}
				n++
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n != len(sampleObjects) {
				t.Errorf("NoSHA256 round %d: %d objects reported", round, n)
			}
		}
		if got := h.n.Load(); got != wantHashed {
			t.Errorf("NoSHA256 round %d: hashed %d objects, want %d", round, got, wantHashed)
		}
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
