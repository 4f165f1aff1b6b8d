package driver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	storage "go.podman.io/storage"
	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/chunked"
	"go.podman.io/storage/pkg/chunked/compressor"
	"go.podman.io/storage/pkg/chunked/toc"
	"go.podman.io/storage/types"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// partialStore opens a c/storage store on cfs with partial pulls enabled.
func partialStore(t *testing.T) (storage.Store, string) {
	t.Helper()
	dir := t.TempDir()
	store, err := storage.GetStore(types.StoreOptions{
		RunRoot:         filepath.Join(dir, "run"),
		GraphRoot:       filepath.Join(dir, "root"),
		GraphDriverName: Name,
		PullOptions:     map[string]string{"enable_partial_images": "true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Shutdown(true) })
	return store, filepath.Join(dir, "root", Name)
}

// zstdChunked compresses a layer tar as zstd:chunked.
func zstdChunked(t *testing.T, tarball []byte) ([]byte, map[string]string) {
	t.Helper()
	var blob bytes.Buffer
	annotations := map[string]string{}
	w, err := compressor.ZstdCompressor(&blob, annotations, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(tarball); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return blob.Bytes(), annotations
}

// blobFetcher serves ranges of a blob, counting the bytes served;
// mangle, if set, may change what a range of file data returns.
type blobFetcher struct {
	blob    []byte
	dataEnd uint64 // where file data ends (the manifest's offset)
	fetched atomic.Int64
	mangle  func(data []byte) []byte
}

func newFetcher(t *testing.T, blob []byte, annotations map[string]string) *blobFetcher {
	pos := strings.Split(annotations["io.github.containers.zstd-chunked.manifest-position"], ":")
	end, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil {
		t.Fatalf("manifest position %q: %v", annotations, err)
	}
	return &blobFetcher{blob: blob, dataEnd: end}
}

func (f *blobFetcher) GetBlobAt(chunks []chunked.ImageSourceChunk) (chan io.ReadCloser, chan error, error) {
	streams, errs := make(chan io.ReadCloser), make(chan error)
	go func() {
		defer close(streams)
		defer close(errs)
		for _, c := range chunks {
			if c.Offset+c.Length > uint64(len(f.blob)) {
				errs <- errors.New("range outside the blob")
				return
			}
			data := append([]byte(nil), f.blob[c.Offset:c.Offset+c.Length]...)
			if f.mangle != nil && c.Offset < f.dataEnd {
				data = f.mangle(data)
			}
			f.fetched.Add(int64(len(data)))
			streams <- io.NopCloser(bytes.NewReader(data))
		}
	}()
	return streams, errs, nil
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomText(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// partialPull pulls tarball, compressed as zstd:chunked, through
// fetcher (made by newFetcher when nil) as a layer on parent.
func partialPull(t *testing.T, store storage.Store, parent string, tarball []byte, setup func(*blobFetcher)) (*storage.Layer, *blobFetcher, error) {
	t.Helper()
	blob, annotations := zstdChunked(t, tarball)
	f := newFetcher(t, blob, annotations)
	if setup != nil {
		setup(f)
	}
	differ, err := chunked.NewDiffer(context.Background(), store, digest.FromBytes(blob), int64(len(blob)), annotations, f)
	if err != nil {
		t.Fatalf("differ: %v", err)
	}
	defer differ.Close()
	out, err := store.PrepareStagedLayer(nil, differ)
	if err != nil {
		return nil, f, err
	}
	if want := digest.FromBytes(tarball); out.UncompressedDigest != want {
		store.CleanupStagedLayer(out)
		t.Fatalf("staged DiffID %s, want %s", out.UncompressedDigest, want)
	}
	layer, err := store.ApplyStagedLayer(storage.ApplyStagedLayerOptions{
		ID: randomID(), ParentLayer: parent, DiffOutput: out,
		DiffOptions: &graphdriver.ApplyDiffWithDifferOpts{},
	})
	if err != nil {
		store.CleanupStagedLayer(out)
		return nil, f, err
	}
	tocDigest, err := toc.GetTOCDigest(annotations)
	if err != nil || tocDigest == nil || layer.TOCDigest != *tocDigest {
		t.Errorf("layer TOC digest %q, want %v (%v)", layer.TOCDigest, tocDigest, err)
	}
	return layer, f, nil
}

// TestPartialPull: a zstd:chunked layer pulled through the differ (c/storage's
// pkg/chunked, ranged reads) becomes a cfs layer whose mount shows the
// tar's files, whose diff is the original tar, whose TOC digest is
// recorded; a second layer sharing a big file with the first fetches
// only what is new (the shared file is taken from the first layer's
// flat directory, never fetched); nothing is left staged.
func TestPartialPull(t *testing.T) {
	testutil.RequireRoot(t)
	store, home := partialStore(t)
	shared, own1, own2 := randomText(256<<10), randomText(64<<10), randomText(64<<10)
	tar1 := mustTar(t, tarfix.Dir("usr/"), tarfix.File("usr/shared", shared), tarfix.File("usr/own1", own1),
		tarfix.File("small", "tiny"), tarfix.Symlink("link", "usr/own1"), tarfix.Hardlink("usr/hard", "usr/own1"),
		tarfix.FileMode("usr/exec", own1[:100], 0o755, 12, 34))
	l1, f1, err := partialPull(t, store, "", tar1, nil)
	if err != nil {
		t.Fatalf("partial pull: %v", err)
	}
	mnt, err := store.Mount(l1.ID, "")
	must(t, err)
	expectFile(t, filepath.Join(mnt, "usr/shared"), shared)
	expectFile(t, filepath.Join(mnt, "usr/hard"), own1)
	expectFile(t, filepath.Join(mnt, "link"), own1)
	expectFile(t, filepath.Join(mnt, "small"), "tiny")
	if st, err := os.Stat(filepath.Join(mnt, "usr/exec")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("usr/exec: %v %v", st, err)
	}
	_, err = store.Unmount(l1.ID, true)
	must(t, err)
	// The diff is the original tar (tar-split and the stored contents).
	rc, err := store.Diff("", l1.ID, &storage.DiffOptions{Compression: nil})
	must(t, err)
	got, err := io.ReadAll(rc)
	rc.Close()
	must(t, err)
	if digest.FromBytes(got) != digest.FromBytes(tar1) {
		t.Errorf("diff of the partially pulled layer is not its original tar (%d bytes, want %d)", len(got), len(tar1))
	}

	// The second layer, on the first: the shared file is not fetched.
	tar2 := mustTar(t, tarfix.Dir("opt/"), tarfix.File("opt/copy-of-shared", shared), tarfix.File("opt/own2", own2))
	l2, f2, err := partialPull(t, store, l1.ID, tar2, nil)
	if err != nil {
		t.Fatalf("second partial pull: %v", err)
	}
	// The same layer pulled into an empty store fetches it all.
	fresh, _ := partialStore(t)
	_, f3, err := partialPull(t, fresh, "", tar2, nil)
	must(t, err)
	t.Logf("fetched: first layer %d, second %d (into an empty store %d)", f1.fetched.Load(), f2.fetched.Load(), f3.fetched.Load())
	if f2.fetched.Load() > f3.fetched.Load()-int64(len(shared))/2 {
		t.Errorf("second layer fetched %d bytes, %d into an empty store: the shared %d bytes were fetched again", f2.fetched.Load(), f3.fetched.Load(), len(shared))
	}
	mnt, err = store.Mount(l2.ID, "")
	must(t, err)
	expectFile(t, filepath.Join(mnt, "opt/copy-of-shared"), shared)
	expectFile(t, filepath.Join(mnt, "usr/shared"), shared)
	expectFile(t, filepath.Join(mnt, "opt/own2"), own2)
	_, err = store.Unmount(l2.ID, true)
	must(t, err)
	if names, _ := readDirNames(filepath.Join(home, "tmp")); len(names) != 0 {
		t.Errorf("left in tmp: %q", names)
	}
}

// TestPartialPullBadRanges: a registry that corrupts or truncates the
// ranges of file data gives an error and stores nothing.
func TestPartialPullBadRanges(t *testing.T) {
	testutil.RequireRoot(t)
	for name, mangle := range map[string]func([]byte) []byte{
		"corrupt":  func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b },
		"truncate": func(b []byte) []byte { return b[:len(b)/2] },
	} {
		t.Run(name, func(t *testing.T) {
			store, home := partialStore(t)
			tarball := mustTar(t, tarfix.File("a", randomText(128<<10)), tarfix.File("b", randomText(128<<10)))
			_, _, err := partialPull(t, store, "", tarball, func(f *blobFetcher) { f.mangle = mangle })
			if err == nil {
				t.Fatal("a pull with mangled ranges succeeded")
			}
			t.Logf("error: %v", err)
			if ls, _ := store.Layers(); len(ls) != 0 {
				t.Errorf("layers stored: %d", len(ls))
			}
			if names, _ := readDirNames(filepath.Join(home, "tmp")); len(names) != 0 {
				t.Errorf("left in tmp: %q", names)
			}
			if n := countObjects(t, filepath.Join(home, "objects")); n != 0 {
				t.Errorf("%d objects stored", n)
			}
		})
	}
}

func countObjects(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
