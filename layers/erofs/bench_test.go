package erofs

import (
	"bytes"
	"io"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// BenchmarkBuildImage builds the image of the 64,246-entry
// cs9-x86_64-developer dump (parse + write, and write alone), on prefixes
// of the dump too so that linear cost shows as a constant ns/entry.
// Reported: entries/s, ns/entry, bytes allocated per build and the peak
// live heap seen during one build (sampled).
//
//	go test -run '^$' -bench BuildImage -benchmem ./layers/erofs
func BenchmarkBuildImage(b *testing.B) {
	var dump []byte
	for _, c := range corpusCases(b) {
		if c.name == "cs9-x86_64-developer.dump.gz" {
			dump = testutil.ReadCorpusFile(b, c.path)
		}
	}
	if dump == nil {
		b.Fatal("cs9-x86_64-developer.dump.gz not in the corpus")
	}
	lines := bytes.SplitAfter(dump, []byte("\n"))
	for _, frac := range []int{4, 2, 1} {
		n := len(lines) / frac
		part := bytes.Join(lines[:n], nil)
		b.Run(sizeName(n)+"/parse+write", func(b *testing.B) {
			benchBuild(b, n, func() {
				tr, err := dumpfile.Parse(bytes.NewReader(part), dumpfile.Options{Strict: true})
				if err != nil {
					b.Fatal(err)
				}
				if err := Write(io.Discard, tr, DefaultOptions()); err != nil {
					b.Fatal(err)
				}
			})
		})
		tr, err := dumpfile.Parse(bytes.NewReader(part), dumpfile.Options{Strict: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(sizeName(n)+"/write", func(b *testing.B) {
			benchBuild(b, n, func() {
				if err := Write(io.Discard, tr, DefaultOptions()); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func sizeName(n int) string {
	return "entries=" + itoa(n)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func benchBuild(b *testing.B, entries int, build func()) {
	b.ReportAllocs()
	peak := peakHeap(build)
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		build()
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(entries)/perOp, "entries/s")
	b.ReportMetric(perOp*1e9/float64(entries), "ns/entry")
	// CPU time (all threads, GC included) is steadier than wall time on
	// a machine shared with other work.
	b.ReportMetric(cpu.Seconds()*1e3/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// peakHeap runs f once after a GC and returns the highest heap (object
// bytes, live or not yet collected) sampled while it ran, minus the heap
// before it started: the build's own peak, without the benchmark's input.
func peakHeap(f func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak - min(base, peak)
}

// BenchmarkReadTree reads the composefs view of the cs9-x86_64-developer
// image (what `composefs-info dump` and layer merging do).
//
//	go test -run '^$' -bench ReadTree -benchmem ./layers/erofs
func BenchmarkReadTree(b *testing.B) {
	var dump []byte
	for _, c := range corpusCases(b) {
		if c.name == "cs9-x86_64-developer.dump.gz" {
			dump = testutil.ReadCorpusFile(b, c.path)
		}
	}
	img, _, err := buildImage(dump, true, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		im, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := im.Tree(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(64246)/(b.Elapsed().Seconds()/float64(b.N)), "entries/s")
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
