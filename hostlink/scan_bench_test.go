package hostlink

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchObjects is the number of synthetic host objects of the cheap-pass
// benchmark (the target: 100k objects in under 1 s).
const benchObjects = 100_000

// writeSyntheticObjects fills dir/objects/xx/ with n small file objects
// of varied sizes (0-255 bytes), named by hash of their index.
func writeSyntheticObjects(tb testing.TB, dir string, n int) {
	tb.Helper()
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(dir, "objects", hexByte(i)), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	buf := make([]byte, 256)
	for i := 0; i < n; i++ {
		var k [8]byte
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		s := checksum(sha256.Sum256(k[:])).String()
		p := filepath.Join(dir, "objects", s[:2], s[2:]+".file")
		if err := os.WriteFile(p, buf[:i%256], 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// cpuTime returns the process's user plus system CPU time, so that the
// benchmarks can report CPU per object apart from wall time (this machine
// is shared: wall time includes waiting for a core).
func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func hexByte(i int) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[i>>4], digits[i&15]})
}

// ageDirs sets the mtime of every objects/xx directory an hour back, as
// on a host whose repository was last written a while ago (directories
// changed within racyWindow are always listed again).
func ageDirs(tb testing.TB, dir string) {
	tb.Helper()
	old := time.Now().Add(-time.Hour)
	for i := 0; i < 256; i++ {
		if err := os.Chtimes(filepath.Join(dir, "objects", hexByte(i)), old, old); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkScan100k measures the index's cheap pass over 100k synthetic
// objects: "cold" is a first pass (list and stat everything; the inodes
// are in the kernel's cache since the files were just written), "warm" a
// later pass with the previous one remembered and nothing changed.
func BenchmarkScan100k(b *testing.B) {
	dir := b.TempDir()
	writeSyntheticObjects(b, dir, benchObjects)
	ageDirs(b, dir)
	objects := filepath.Join(dir, "objects")
	first, _, err := scanFileObjects(context.Background(), objects, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		prev *scanState
	}{{"cold", nil}, {"warm", first}} {
		b.Run(bc.name, func(b *testing.B) {
			var total, cpu time.Duration
			iters := 0
			for b.Loop() {
				start, cpu0 := time.Now(), cpuTime(b)
				s, _, err := scanFileObjects(context.Background(), objects, bc.prev)
				total += time.Since(start)
				cpu += cpuTime(b) - cpu0
				iters++
				if err != nil {
					b.Fatal(err)
				}
				if n := len(s.objects()); n != benchObjects {
					b.Fatalf("scanned %d objects, want %d", n, benchObjects)
				}
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(iters*benchObjects), "ns/object")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(iters*benchObjects), "cpu-ns/object")
		})
	}
}

// BenchmarkNewIndex100k measures building a whole Index (scan state
// load, cheap pass, size map, digest cache load and save) over 100k
// synthetic objects: "cold" with an empty cache directory each time (a
// host's first start), "warm" with the cache of a previous process.
func BenchmarkNewIndex100k(b *testing.B) {
	dir := b.TempDir()
	writeSyntheticObjects(b, dir, benchObjects)
	ageDirs(b, dir)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("[core]\nmode=bare\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	r, err := OpenRepo(dir)
	if err != nil {
		b.Fatal(err)
	}
	h := &countingHash{}
	warmDir := b.TempDir()
	for _, fresh := range []bool{true, false} {
		name := map[bool]string{true: "cold", false: "warm"}[fresh]
		b.Run(name, func(b *testing.B) {
			var total, cpu time.Duration
			iters := 0
			for b.Loop() {
				cacheDir := warmDir
				if fresh {
					cacheDir = b.TempDir()
				}
				start, cpu0 := time.Now(), cpuTime(b)
				ix, err := NewIndex(context.Background(), r, IndexOptions{CacheDir: cacheDir, Hash: h.hash, HashName: "sha256-test"})
				total += time.Since(start)
				cpu += cpuTime(b) - cpu0
				iters++
				if err != nil {
					b.Fatal(err)
				}
				if s := ix.stats(); s.Objects != benchObjects {
					b.Fatalf("indexed %d objects", s.Objects)
				}
				ix.Close()
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(iters*benchObjects), "ns/object")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(iters*benchObjects), "cpu-ns/object")
		})
	}
}
