package dedup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Insert throughput benchmarks. Run them with the SHA-256 baseline in
// the same run, for example:
//
//	go test -run '^$' -bench . -cpu 1,2 ./dedup/
//
// The store uses SyncNever so that the figures measure hashing and
// writing, not this machine's disk flush latency.

const benchSize = 4 << 20

// cpuTime returns the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds "cpuMB/s": bytes processed per CPU second, which does
// not depend on how busy the machine is, unlike the wall-clock MB/s.
func reportCPU(b *testing.B, start time.Duration, bytesPerOp int64) {
	cpu := cpuTime() - start
	if cpu > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/cpu.Seconds()/1e6, "cpuMB/s")
	}
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "store"), Options{Sync: SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSHA256 is the baseline: plain crypto/sha256 over the same
// size of content.
func BenchmarkSHA256(b *testing.B) {
	data := content(1, benchSize)
	b.SetBytes(benchSize)
	start := cpuTime()
	for b.Loop() {
		_ = sha256.Sum256(data)
	}
	reportCPU(b, start, benchSize)
}

// insertNew inserts fresh content (a counter in its first bytes) once per
// iteration, removing the object again outside the timed region so the
// store does not grow.
func insertNew(b *testing.B, size int, opts InsertOptions) {
	s := benchStore(b)
	in, err := s.BeginIngest(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	data := content(2, size)
	b.SetBytes(int64(size))
	var n uint64
	b.ResetTimer()
	var removal time.Duration
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		n++
		binary.LittleEndian.PutUint64(data, n)
		o, err := in.Insert(context.Background(), bytes.NewReader(data), opts)
		if err != nil || o.Existed {
			b.Fatal(err, o.Existed)
		}
		b.StopTimer()
		t0 := cpuTime()
		os.Remove(s.Path(o.Digest))
		removal += cpuTime() - t0
		b.StartTimer()
	}
	reportCPU(b, start+removal, int64(size))
}

// BenchmarkInsertNew: new 4 MiB contents, both digests.
func BenchmarkInsertNew(b *testing.B) { insertNew(b, benchSize, InsertOptions{}) }

// BenchmarkInsertNewNoSHA256: new 4 MiB contents, fs-verity digest only.
func BenchmarkInsertNewNoSHA256(b *testing.B) { insertNew(b, benchSize, InsertOptions{NoSHA256: true}) }

// BenchmarkInsertNewSmall: new 64 KiB contents (hashed in memory, then
// written).
func BenchmarkInsertNewSmall(b *testing.B) { insertNew(b, 64<<10, InsertOptions{}) }

// insertPresent inserts content the store already holds.
func insertPresent(b *testing.B, size int, hint bool) {
	s := benchStore(b)
	data := content(3, size)
	o, err := s.Insert(context.Background(), bytes.NewReader(data), InsertOptions{})
	if err != nil {
		b.Fatal(err)
	}
	opts := InsertOptions{}
	if hint {
		opts.SHA256 = &o.SHA256
	}
	b.SetBytes(int64(size))
	start := cpuTime()
	for b.Loop() {
		o, err := s.Insert(context.Background(), bytes.NewReader(data), opts)
		if err != nil || !o.Existed {
			b.Fatal(err)
		}
	}
	reportCPU(b, start, int64(size))
}

// BenchmarkInsertPresentSmall: 64 KiB contents already present (hashed in
// memory, nothing written).
func BenchmarkInsertPresentSmall(b *testing.B) { insertPresent(b, 64<<10, false) }

// BenchmarkInsertPresent: 4 MiB contents already present, no hint (spilled
// to an unnamed temporary file that is then dropped unsynced).
func BenchmarkInsertPresent(b *testing.B) { insertPresent(b, benchSize, false) }

// BenchmarkInsertPresentHinted: 4 MiB contents already present, with the
// expected SHA-256 given (hashed only, nothing written).
func BenchmarkInsertPresentHinted(b *testing.B) { insertPresent(b, benchSize, true) }

// BenchmarkWriteTemp is the write-side baseline: 4 MiB written to an
// unnamed temporary file in the store's staging directory and dropped,
// with no hashing. InsertNew costs about this plus the two digests.
func BenchmarkWriteTemp(b *testing.B) {
	s := benchStore(b)
	data := content(5, benchSize)
	b.SetBytes(benchSize)
	start := cpuTime()
	for b.Loop() {
		t, err := s.createTemp()
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(data); off += DefaultSmallThreshold {
			if _, err := t.f.Write(data[off : off+DefaultSmallThreshold]); err != nil {
				b.Fatal(err)
			}
		}
		t.discard()
	}
	reportCPU(b, start, benchSize)
}

// BenchmarkInsertNewParallel inserts new 1 MiB contents from GOMAXPROCS
// goroutines: compare -cpu 1 with -cpu 2.
func BenchmarkInsertNewParallel(b *testing.B) {
	s := benchStore(b)
	const size = 1 << 20
	b.SetBytes(size)
	var ctr atomic.Uint64
	start := cpuTime()
	defer func() { reportCPU(b, start, size) }()
	b.RunParallel(func(pb *testing.PB) {
		data := content(4, size)
		for pb.Next() {
			binary.LittleEndian.PutUint64(data, ctr.Add(1))
			o, err := s.Insert(context.Background(), bytes.NewReader(data), InsertOptions{})
			if err != nil {
				b.Error(err)
				return
			}
			os.Remove(s.Path(o.Digest))
		}
	})
}
