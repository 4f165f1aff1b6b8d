package dedup

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// TestSparseWriterKeepsBytes: whatever the write sizes, the file reads
// back as written, and aligned all-zero blocks take no disk space.
func TestSparseWriterKeepsBytes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var want []byte
	for i := 0; i < 200; i++ {
		n := rng.Intn(3 * holeBlock)
		if rng.Intn(2) == 0 {
			want = append(want, make([]byte, n)...)
		} else {
			b := make([]byte, n)
			rng.Read(b)
			want = append(want, b...)
		}
	}
	want = append(want, make([]byte, 64*holeBlock)...) // a trailing hole
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &sparseWriter{f: f}
	for rest := want; len(rest) > 0; {
		n := min(1+rng.Intn(3*holeBlock), len(rest))
		if m, err := w.Write(rest[:n]); err != nil || m != n {
			t.Fatalf("Write = %d, %v", m, err)
		}
		rest = rest[n:]
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= int64(len(want))-64*holeBlock {
		t.Errorf("%d bytes allocated for %d bytes ending in a 256 KiB hole", st.Blocks*512, len(want))
	}
}

// TestInsertSparse: a large content of zeros with a little data is stored
// sparse, with the digest of its bytes.
func TestInsertSparse(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	content := make([]byte, 64<<20)
	copy(content[10<<20:], "some data in the middle")
	copy(content[len(content)-5:], "tail!")
	o, err := s.Insert(context.Background(), bytes.NewReader(content), InsertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := fsverity.Digest(bytes.NewReader(content))
	if o.Digest != Digest(want) {
		t.Fatalf("digest %x, want %x", o.Digest, want)
	}
	f, err := s.Open(o.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("object reads back %d bytes (%v), want the content", len(got), err)
	}
	var st unix.Stat_t
	if err := unix.Stat(s.Path(o.Digest), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("a 64 MiB content of zeros and 28 data bytes takes %d bytes on disk", st.Blocks*512)
	}
}
