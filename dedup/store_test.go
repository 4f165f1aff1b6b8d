package dedup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// openTest opens a store in a fresh temporary directory, without fsync
// (the crash test covers the sync policy's ordering, not the disk's).
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Sync == SyncBatch {
		opts.Sync = SyncNever
	}
	s, err := Open(filepath.Join(t.TempDir(), "store"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// content returns deterministic pseudo-random bytes.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestInsertSizes(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{SmallThreshold: 8192})
	for _, n := range []int{0, 1, 4095, 4096, 8191, 8192, 8193, 100_000, 1<<20 + 5} {
		data := content(uint64(n), n)
		o, err := s.Insert(ctx, iotest.HalfReader(bytes.NewReader(data)), InsertOptions{})
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if o.Digest != Digest(fsverity.DigestBytes(data)) || o.SHA256 != SHA256(sha256.Sum256(data)) || o.Size != int64(n) || o.Existed {
			t.Fatalf("size %d: got %+v", n, o)
		}
		got, err := os.ReadFile(s.Path(o.Digest))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: object content differs (%v)", n, err)
		}
		fi, err := s.Stat(o.Digest)
		if err != nil || fi.Mode().Perm() != objectMode || !fi.Mode().IsRegular() {
			t.Fatalf("size %d: stat %v, %v", n, fi, err)
		}
		o2, err := s.Insert(ctx, bytes.NewReader(data), InsertOptions{})
		if err != nil || !o2.Existed || o2.Digest != o.Digest {
			t.Fatalf("size %d: second insert %+v, %v", n, o2, err)
		}
		if d, ok := s.LookupSHA256(o.SHA256); !ok || d != o.Digest {
			t.Fatalf("size %d: LookupSHA256 = %s, %v", n, d, ok)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), dirStaging)); len(ents) != 0 {
		t.Errorf("staging not empty: %v", ents)
	}
}

func TestLayoutPath(t *testing.T) {
	s := openTest(t, Options{})
	d := Digest(fsverity.DigestBytes([]byte("hello world")))
	want := filepath.Join(s.Root(), "objects", "1e", "2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64")
	if s.Path(d) != want {
		t.Fatalf("Path = %s, want %s", s.Path(d), want)
	}
	if s.Has(d) {
		t.Fatal("Has before insert")
	}
	if _, err := s.Open(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open absent: %v", err)
	}
	if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat absent: %v", err)
	}
	if _, err := s.Insert(context.Background(), strings.NewReader("hello world"), InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := s.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); string(b) != "hello world" {
		t.Fatalf("Open read %q", b)
	}
}

func TestInsertExpectedDigests(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{SmallThreshold: 4096})
	data := content(1, 50_000)
	d := Digest(fsverity.DigestBytes(data))
	sha := SHA256(sha256.Sum256(data))
	wrong := d
	wrong[5] ^= 1
	if _, err := s.Insert(ctx, bytes.NewReader(data), InsertOptions{Digest: &wrong}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("wrong digest: %v", err)
	}
	if s.Has(d) || s.Has(wrong) {
		t.Fatal("mismatching insert kept an object")
	}
	if _, err := s.Insert(ctx, bytes.NewReader(data), InsertOptions{Digest: &d}); err != nil {
		t.Fatal(err)
	}
	// Present and named by SHA-256: verified without writing.
	o, err := s.Insert(ctx, bytes.NewReader(data), InsertOptions{SHA256: &sha})
	if err != nil || !o.Existed || o.Digest != d {
		t.Fatalf("expected sha256: %+v, %v", o, err)
	}
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	if _, err := s.Insert(ctx, bytes.NewReader(bad), InsertOptions{SHA256: &sha}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("content not matching sha256 hint: %v", err)
	}
	o, err = s.Insert(ctx, bytes.NewReader(bad), InsertOptions{NoSHA256: true})
	if err != nil || o.SHA256 != (SHA256{}) || o.Existed {
		t.Fatalf("NoSHA256: %+v, %v", o, err)
	}
}

func TestInsertReadError(t *testing.T) {
	s := openTest(t, Options{SmallThreshold: 4096})
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(content(2, 10_000)), iotest.ErrReader(boom))
	if _, err := s.Insert(context.Background(), r, InsertOptions{}); !errors.Is(err, boom) {
		t.Fatalf("read error: %v", err)
	}
	st, err := s.Stats(context.Background())
	if err != nil || st.Objects != 0 {
		t.Fatalf("objects after failed insert: %d, %v", st.Objects, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Insert(ctx, bytes.NewReader(content(3, 10)), InsertOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestRefsRoundTripAndErrors(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	var ds []Digest
	for i := range 5 {
		o, err := s.Insert(ctx, bytes.NewReader(content(uint64(i), 100)), InsertOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, o.Digest, o.Digest) // duplicates are folded
	}
	if err := s.SetRefs(ctx, "layer-1", ds); err != nil {
		t.Fatal(err)
	}
	got, err := s.Refs("layer-1")
	want := slices.Compact(slices.SortedFunc(slices.Values(ds), compareDigest))
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Refs = %v, %v; want %v", got, err, want)
	}
	absent := Digest(fsverity.DigestBytes([]byte("absent")))
	if err := s.SetRefs(ctx, "layer-2", []Digest{absent}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetRefs absent: %v", err)
	}
	for _, bad := range []string{"", ".x", "a/b", "..", strings.Repeat("a", 256), "sp ace"} {
		if err := s.SetRefs(ctx, bad, nil); !errors.Is(err, ErrInvalidLayerID) {
			t.Errorf("SetRefs(%q): %v", bad, err)
		}
	}
	if _, err := s.Refs("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Refs absent: %v", err)
	}
	if err := s.DropRefs(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DropRefs absent: %v", err)
	}
	p := filepath.Join(s.Root(), dirRefs, "layer-1")
	b, _ := os.ReadFile(p)
	b[20] ^= 1
	os.WriteFile(p, b, 0o644)
	if _, err := s.Refs("layer-1"); !errors.Is(err, ErrCorruptRefs) {
		t.Fatalf("corrupt refs: %v", err)
	}
	if _, err := s.GC(ctx); !errors.Is(err, ErrCorruptRefs) {
		t.Fatalf("GC over corrupt refs must stop: %v", err)
	}
	if !s.Has(ds[0]) {
		t.Fatal("GC deleted while refs were unreadable")
	}
}

func TestGCKeepsReferencedAndPending(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	ins := func(in *Ingest, seed uint64) Digest {
		o, err := in.Insert(ctx, bytes.NewReader(content(seed, 5000)), InsertOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return o.Digest
	}
	a, err := s.BeginIngest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := ins(a, 1), ins(a, 2)
	if err := a.Commit(ctx, "L1"); err != nil {
		t.Fatal(err)
	}
	b, _ := s.BeginIngest(ctx)
	d3 := ins(b, 3)
	c, _ := s.BeginIngest(ctx)
	d4 := ins(c, 4)
	if err := c.Abort(); err != nil {
		t.Fatal(err)
	}
	rep, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has(d1) || !s.Has(d2) || !s.Has(d3) || s.Has(d4) {
		t.Fatalf("after GC: has d1..d4 = %v %v %v %v", s.Has(d1), s.Has(d2), s.Has(d3), s.Has(d4))
	}
	if rep.Removed != 1 || rep.Pending != 1 || rep.Layers != 1 {
		t.Fatalf("report %+v", rep)
	}
	// d3's pin also protects the index entry's object; Ref pins a
	// present object for a second session.
	if err := b.Ref(ctx, d1); err != nil {
		t.Fatal(err)
	}
	if err := b.Ref(ctx, d4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Ref absent: %v", err)
	}
	if err := s.DropRefs(ctx, "L1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Has(d1) || s.Has(d2) || !s.Has(d3) {
		t.Fatalf("after drop: has d1 d2 d3 = %v %v %v", s.Has(d1), s.Has(d2), s.Has(d3))
	}
	if err := b.Commit(ctx, "L2"); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx, "L2"); !errors.Is(err, ErrClosed) {
		t.Fatalf("second commit: %v", err)
	}
	got, _ := s.Refs("L2")
	if want := slices.SortedFunc(slices.Values([]Digest{d1, d3}), compareDigest); !slices.Equal(got, want) {
		t.Fatalf("L2 refs %v, want %v", got, want)
	}
}

func TestGCStalePendingAndIndex(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	in, _ := s.BeginIngest(ctx)
	o, err := in.Insert(ctx, strings.NewReader("orphan"), InsertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a dead process: drop the lock without removing the file.
	in.f.Close()
	rep, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Has(o.Digest) || rep.StalePending != 1 || rep.IndexRemoved != 1 {
		t.Fatalf("stale pending not collected: has=%v %+v", s.Has(o.Digest), rep)
	}
	if _, ok := s.LookupSHA256(o.SHA256); ok {
		t.Fatal("index still resolves a collected object")
	}
}

func TestStoreInsertPinnedUntilClose(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "s")
	s, err := Open(root, Options{Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := s.Insert(ctx, strings.NewReader("pinned"), InsertOptions{})
	if _, err := s.GC(ctx); err != nil || !s.Has(o.Digest) {
		t.Fatalf("GC removed a pinned object (%v)", err)
	}
	s.Close()
	if _, err := s.Insert(ctx, strings.NewReader("x"), InsertOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("insert after close: %v", err)
	}
	s2, err := Open(root, Options{Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.GC(ctx); err != nil || s2.Has(o.Digest) {
		t.Fatalf("object still there after Close+GC (%v)", err)
	}
}

func TestConcurrentInsertsSameContent(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{SmallThreshold: 4096})
	datas := [][]byte{content(1, 100), content(2, 20_000), content(3, 300_000)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := map[Digest]int{}
	for g := range 16 {
		wg.Go(func() {
			for i := range 30 {
				o, err := s.Insert(ctx, bytes.NewReader(datas[(g+i)%3]), InsertOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				if !o.Existed {
					mu.Lock()
					created[o.Digest]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(created) != 3 {
		t.Fatalf("created %d distinct objects, want 3", len(created))
	}
	for d, n := range created {
		if n != 1 {
			t.Errorf("object %s reported new %d times", d, n)
		}
	}
	rep, err := s.Fsck(ctx, FsckOptions{})
	if err != nil || !rep.Clean() || rep.Objects != 3 {
		t.Fatalf("fsck %+v, %v", rep, err)
	}
}

func TestFormatVersion(t *testing.T) {
	root := filepath.Join(t.TempDir(), "s")
	s, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.WriteFile(filepath.Join(root, fileFormat), []byte("cfs-dedup-store 99\n"), 0o644)
	if _, err := Open(root, Options{}); !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("future format: %v", err)
	}
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	a, b := content(1, 1000), content(2, 3000)
	for _, d := range [][]byte{a, b, a, a} {
		if _, err := s.Insert(ctx, bytes.NewReader(d), InsertOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects != 2 || st.Bytes != 4000 || st.DedupHits != 2 || st.BytesSaved != 2000 ||
		st.ByMode[LinkWritten] != (ModeCount{2, 4000}) {
		t.Fatalf("stats %+v", st)
	}
}

// TestIndexAcrossStoresAndCompaction: two Store values on one root (as
// two processes would be); GC in one rewrites the log, the other keeps
// appending to the new log and finds records written by both.
func TestIndexAcrossStoresAndCompaction(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "s")
	a, err := Open(root, Options{Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(root, Options{Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	keep := ingestLayer(t, a, "keep", content(1, 100))
	in, _ := a.BeginIngest(ctx)
	gone, _ := in.Insert(ctx, bytes.NewReader(content(2, 100)), InsertOptions{})
	in.Abort()
	shaKeep := SHA256(sha256.Sum256(content(1, 100)))
	if d, ok := b.LookupSHA256(shaKeep); !ok || d != keep[0] {
		t.Fatal("b does not see a's record")
	}
	rep, err := b.GC(ctx)
	if err != nil || rep.IndexRemoved != 1 || rep.Removed != 1 {
		t.Fatalf("gc %+v %v", rep, err)
	}
	if _, ok := a.LookupSHA256(gone.SHA256); ok {
		t.Fatal("collected object still found by SHA-256")
	}
	// a's append descriptor points at the replaced log; its next record
	// must land in the new one, where b finds it.
	o := ingestLayer(t, a, "new", content(3, 100))
	if d, ok := b.LookupSHA256(SHA256(sha256.Sum256(content(3, 100)))); !ok || d != o[0] {
		t.Fatal("record appended after compaction is lost")
	}
	if d, ok := a.LookupSHA256(shaKeep); !ok || d != keep[0] {
		t.Fatal("compaction lost a live record")
	}
}

func TestParseIndexSkipsDamage(t *testing.T) {
	var log []byte
	var want []Digest
	for i := range 3 {
		d := Digest(sha256.Sum256([]byte{byte(i)}))
		rec := indexRecordBytes(SHA256(d), d)
		if i == 1 {
			log = append(log, rec[:30]...) // torn record
		} else {
			want = append(want, d)
		}
		log = append(log, rec[:]...)
	}
	var got []Digest
	parseIndex(log, func(_ SHA256, d Digest) { got = append(got, d) })
	want = []Digest{want[0], Digest(sha256.Sum256([]byte{1})), want[1]}
	if !slices.Equal(got, want) {
		t.Fatalf("parsed %v, want %v", got, want)
	}
}

func TestParseModes(t *testing.T) {
	for _, m := range []VerityMode{VerityNone, VerityAuto, VerityRequire} {
		if got, err := ParseVerityMode(m.String()); err != nil || got != m {
			t.Errorf("ParseVerityMode(%q) = %v, %v", m, got, err)
		}
	}
	for _, m := range []SyncMode{SyncBatch, SyncEach, SyncNever} {
		if got, err := ParseSyncMode(m.String()); err != nil || got != m {
			t.Errorf("ParseSyncMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseVerityMode("yes"); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("ParseVerityMode(yes): %v", err)
	}
	if _, err := ParseSyncMode(""); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("ParseSyncMode(empty): %v", err)
	}
}

// TestFailedInsertNotPinned: an insert that fails must not end up in the
// session's refs (Commit would register an absent object).
func TestFailedInsertNotPinned(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{SmallThreshold: 4096})
	in, _ := s.BeginIngest(ctx)
	data := content(5, 10_000)
	wrong := Digest{1}
	if _, err := in.Insert(ctx, bytes.NewReader(data), InsertOptions{Digest: &wrong}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatal(err)
	}
	if _, _, err := in.InsertFile(ctx, "/nonexistent", LinkAuto); err == nil {
		t.Fatal("InsertFile of a missing file succeeded")
	}
	if len(in.Digests()) != 0 {
		t.Fatalf("failed inserts pinned %v", in.Digests())
	}
	if err := in.Commit(ctx, "empty"); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Fsck(ctx, FsckOptions{}); err != nil || !rep.Clean() {
		t.Fatalf("fsck %+v %v", rep, err)
	}
}

// TestRecoverTornAfterCrash simulates a machine crash under SyncBatch: a
// dead session created an object that came back torn. The next Open must
// delete it (before any insert could find it), keep the good one, and
// leave fsck clean.
func TestRecoverTornAfterCrash(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "s")
	s, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := s.BeginIngest(ctx)
	good, _ := in.Insert(ctx, bytes.NewReader(content(1, 9000)), InsertOptions{})
	bad, _ := in.Insert(ctx, bytes.NewReader(content(2, 9000)), InsertOptions{})
	if err := os.Truncate(s.Path(bad.Digest), 4096); err != nil {
		t.Fatal(err)
	}
	in.f.Close() // the process dies: lock released, pending file left
	s2, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Has(bad.Digest) || !s2.Has(good.Digest) {
		t.Fatalf("after recovery: torn present %v, good present %v", s2.Has(bad.Digest), s2.Has(good.Digest))
	}
	if ents, _ := os.ReadDir(filepath.Join(root, dirPending)); len(ents) != 0 {
		t.Fatalf("dead pending file left: %v", ents)
	}
	o, err := s2.Insert(ctx, bytes.NewReader(content(2, 9000)), InsertOptions{})
	if err != nil || o.Existed {
		t.Fatalf("re-insert of the torn content: %+v %v", o, err)
	}
	if rep, err := s2.Fsck(ctx, FsckOptions{}); err != nil || !rep.Clean() {
		t.Fatalf("fsck %+v %v", rep, err)
	}
}

func TestSyncEach(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "s"), Options{Sync: SyncEach, SmallThreshold: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds := ingestLayer(t, s, "l", content(1, 100), content(2, 50_000))
	for _, d := range ds {
		if !s.Has(d) {
			t.Fatalf("missing %s", d)
		}
	}
	if rep, err := s.Fsck(ctx, FsckOptions{}); err != nil || !rep.Clean() {
		t.Fatalf("fsck %+v %v", rep, err)
	}
}

// TestInsertsWithConcurrentGC: sessions insert overlapping contents while
// GC loops; every object must be present the moment its insert returns,
// and after every commit.
func TestInsertsWithConcurrentGC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := openTest(t, Options{SmallThreshold: 4096})
	gcDone := make(chan int)
	go func() {
		n := 0
		for ctx.Err() == nil {
			if _, err := s.GC(ctx); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
			n++
		}
		gcDone <- n
	}()
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for k := range 8 {
				in, err := s.BeginIngest(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				for i := range 5 {
					o, err := in.Insert(ctx, bytes.NewReader(poolContent(g*3+k+i)), InsertOptions{})
					if err != nil {
						t.Error(err)
						return
					}
					if !s.Has(o.Digest) {
						t.Errorf("object %s absent right after its insert returned", o.Digest)
					}
				}
				if k%3 == 0 {
					in.Abort() // leaves garbage for GC
					continue
				}
				if err := in.Commit(ctx, fmt.Sprintf("g%d-%d", g, k)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	cancel()
	t.Logf("%d collections ran alongside", <-gcDone)
	rep, err := s.Fsck(context.Background(), FsckOptions{})
	if err != nil || !rep.Clean() {
		t.Fatalf("fsck %+v %v", rep, err)
	}
}

// TestNamedTempFallback runs inserts through the named temporary file
// path used where O_TMPFILE is unsupported.
func TestNamedTempFallback(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{SmallThreshold: 4096})
	s.noTmpfile.Store(true)
	for i, n := range []int{10, 50_000} {
		data := content(uint64(i), n)
		o, err := s.Insert(ctx, bytes.NewReader(data), InsertOptions{})
		if err != nil || o.Existed {
			t.Fatalf("size %d: %+v %v", n, o, err)
		}
		o, err = s.Insert(ctx, bytes.NewReader(data), InsertOptions{})
		if err != nil || !o.Existed {
			t.Fatalf("size %d again: %+v %v", n, o, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), dirStaging)); len(ents) != 0 {
		t.Fatalf("named temporary files left in staging: %v", ents)
	}
	if rep, err := s.Fsck(ctx, FsckOptions{}); err != nil || !rep.Clean() || rep.Objects != 2 {
		t.Fatalf("fsck %+v %v", rep, err)
	}
}

// TestHintedMismatchKeepsEarlierPin: a hinted insert that fails
// verification must not unregister the same digest pinned earlier by a
// good insert in the session, and alone must not register it.
func TestHintedMismatchKeepsEarlierPin(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{SmallThreshold: 4096})
	data := content(1, 20_000)
	bad := bytes.Clone(data)
	bad[0] ^= 1
	o, _ := s.Insert(ctx, bytes.NewReader(data), InsertOptions{})

	alone, _ := s.BeginIngest(ctx)
	if _, err := alone.Insert(ctx, bytes.NewReader(bad), InsertOptions{Digest: &o.Digest}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	if len(alone.Digests()) != 0 {
		t.Fatalf("failed hinted insert registered %v", alone.Digests())
	}
	alone.Abort()

	in, _ := s.BeginIngest(ctx)
	if _, err := in.Insert(ctx, bytes.NewReader(data), InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Insert(ctx, bytes.NewReader(bad), InsertOptions{SHA256: &o.SHA256}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	if got := in.Digests(); !slices.Equal(got, []Digest{o.Digest}) {
		t.Fatalf("Digests = %v, want the earlier good pin", got)
	}
	o2, err := in.Insert(ctx, bytes.NewReader(data), InsertOptions{SHA256: &o.SHA256})
	if err != nil || !o2.Existed {
		t.Fatalf("good hinted insert: %+v %v", o2, err)
	}
	in.Abort()
}

func TestParseLinkMode(t *testing.T) {
	for _, m := range []LinkMode{LinkAuto, LinkHardlink, LinkReflink, LinkCopy} {
		if got, err := ParseLinkMode(m.String()); err != nil || got != m {
			t.Errorf("ParseLinkMode(%q) = %v, %v", m, got, err)
		}
	}
	for _, bad := range []string{"written", "none", "off", ""} {
		if _, err := ParseLinkMode(bad); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("ParseLinkMode(%q): %v, want ErrInvalidOption", bad, err)
		}
	}
}
