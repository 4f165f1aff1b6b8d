package fsverity

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"
)

// vectors is the table at the end of
// testdata/conformance/composefs/README.md (`fsverity digest` output).
var vectors = []struct {
	name string
	data []byte
	want string
}{
	{"empty", nil, "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"},
	{"hello world", []byte("hello world"), "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64"},
	{"hello world newline", []byte("hello world\n"), "37061ef2ac4c21bec68489b56138c5780306a4ad7fe6676236ecdf2c9027cd92"},
	{"foo bar baz newline", []byte("foo bar baz\n"), "91e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b"},
	{"4096 zero bytes", make([]byte, 4096), "babc284ee4ffe7f449377fbf6692715b43aec7bc39c094a95878904d34bac97e"},
	{"4097 a", bytes.Repeat([]byte("a"), 4097), "18b155c0b6e054f3f7d22488ed15340e74dc161ce2d123e13eb685c3ce565f70"},
	{"bytes 0..255 x512", seq256(512), "5e6b9bffcc89537b92886377270b335986e8292d3c4bd2c4c027e0c3f348ebf9"},
	{"528384 x (two levels)", bytes.Repeat([]byte("x"), 528384), "c4457f43f307992a4dda813cf05aa2cd0b09ecf642a74b261a68cf8a9e2f4609"},
}

func seq256(times int) []byte {
	b := make([]byte, 0, 256*times)
	for range times {
		for i := range 256 {
			b = append(b, byte(i))
		}
	}
	return b
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			if got := Hex(DigestBytes(v.data)); got != v.want {
				t.Errorf("DigestBytes = %s, want %s", got, v.want)
			}
			d, n, err := Digest(iotest.OneByteReader(bytes.NewReader(v.data)))
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(v.data)) || Hex(d) != v.want {
				t.Errorf("Digest = %s, %d; want %s, %d", Hex(d), n, v.want, len(v.data))
			}
			h := New()
			h.Write(v.data)
			if got := Hex([Size]byte(h.Sum(nil))); got != v.want {
				t.Errorf("Sum = %s, want %s", got, v.want)
			}
		})
	}
}

// TestResetAndSumIdempotent checks that Sum does not change the state and
// that a reused Hasher gives the same digests as a fresh one.
func TestResetAndSumIdempotent(t *testing.T) {
	h := New()
	for _, v := range vectors {
		h.Reset()
		for i := 0; i < len(v.data); i += 1000 {
			h.Write(v.data[i:min(i+1000, len(v.data))])
			_ = h.Sum(nil) // must not disturb the state
		}
		if got := Hex(h.Sum32()); got != v.want {
			t.Errorf("%s after Reset: %s, want %s", v.name, got, v.want)
		}
		if got := Hex(h.Sum32()); got != v.want {
			t.Errorf("%s second Sum: %s, want %s", v.name, got, v.want)
		}
	}
}

// refDigest is a one-shot reference: it builds every tree level in full,
// the way the kernel documentation describes it.
func refDigest(data []byte) [Size]byte {
	var root [Size]byte
	if len(data) > 0 {
		var lvl []byte
		for off := 0; off < len(data); off += BlockSize {
			blk := make([]byte, BlockSize)
			copy(blk, data[off:])
			s := sha256.Sum256(blk)
			lvl = append(lvl, s[:]...)
		}
		for len(lvl) > Size {
			var next []byte
			for off := 0; off < len(lvl); off += BlockSize {
				blk := make([]byte, BlockSize)
				copy(blk, lvl[off:])
				s := sha256.Sum256(blk)
				next = append(next, s[:]...)
			}
			if len(lvl) <= BlockSize {
				lvl = next
				break
			}
			lvl = next
		}
		copy(root[:], lvl)
	}
	desc := make([]byte, descriptorSize)
	desc[0], desc[1], desc[2] = 1, 1, 12
	binary.LittleEndian.PutUint64(desc[8:], uint64(len(data)))
	copy(desc[16:], root[:])
	return sha256.Sum256(desc)
}

func TestReferenceMatchesVectors(t *testing.T) {
	for _, v := range vectors {
		if got := Hex(refDigest(v.data)); got != v.want {
			t.Errorf("refDigest(%s) = %s, want %s", v.name, got, v.want)
		}
	}
}

// TestTreeBoundaries compares streaming and reference digests at sizes
// around block and level boundaries (128 and 128*128 blocks).
func TestTreeBoundaries(t *testing.T) {
	if testing.Short() {
		t.Skip("large inputs")
	}
	big := bytes.Repeat([]byte("0123456789abcdefg"), (128*128*BlockSize+3*BlockSize)/17+1)
	sizes := []int{1, 4095, 4096, 4097, 8192, 128 * BlockSize, 128*BlockSize + 1, 129 * BlockSize,
		128 * 128 * BlockSize, 128*128*BlockSize + 1, 128*128*BlockSize + 2*BlockSize}
	for _, n := range sizes {
		data := big[:n]
		h := New()
		for i := 0; i < n; i += 65536 + 3 {
			h.Write(data[i:min(i+65536+3, n)])
		}
		if got, want := h.Sum32(), refDigest(data); got != want {
			t.Errorf("size %d: streaming %s, reference %s", n, Hex(got), Hex(want))
		}
	}
}

func TestParseHex(t *testing.T) {
	d, err := ParseHex(strings.ToUpper(vectors[1].want))
	if err != nil || Hex(d) != vectors[1].want {
		t.Fatalf("ParseHex round trip: %s, %v", Hex(d), err)
	}
	for _, bad := range []string{"", "abc", vectors[1].want[:63] + "g", vectors[1].want + "00"} {
		if _, err := ParseHex(bad); !errors.Is(err, ErrInvalidHex) {
			t.Errorf("ParseHex(%q) error %v, want ErrInvalidHex", bad, err)
		}
	}
}

func TestWriteAllocs(t *testing.T) {
	h := New()
	buf := make([]byte, 3*BlockSize+100)
	h.Write(make([]byte, 200*BlockSize)) // grow the tree once
	allocs := testing.AllocsPerRun(100, func() {
		h.Write(buf)
		_ = h.Sum32()
	})
	if allocs != 0 {
		t.Errorf("Write+Sum32 allocate %v times per run, want 0", allocs)
	}
}

// FuzzSplits checks that any split of the input into writes gives the
// one-shot reference digest.
func FuzzSplits(f *testing.F) {
	for _, v := range vectors {
		if len(v.data) < 10000 {
			f.Add(v.data, []byte{1, 7, 200})
		}
	}
	f.Add(bytes.Repeat([]byte{0xa5}, 3*BlockSize+17), []byte{0, 255, 16, 1})
	f.Fuzz(func(t *testing.T, data []byte, splits []byte) {
		h := New()
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(splits) > 0 {
				n = min(n, int(splits[i%len(splits)])*37+1)
			}
			h.Write(rest[:n])
			rest = rest[n:]
		}
		if got, want := h.Sum32(), refDigest(data); got != want {
			t.Fatalf("len %d: streaming %s, reference %s", len(data), Hex(got), Hex(want))
		}
	})
}

func benchData() []byte { return bytes.Repeat([]byte("fs-verity bench!"), 1<<16) } // 1 MiB

// cpuTime returns the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds "cpuMB/s", bytes per CPU second: on a shared machine
// the wall-clock MB/s of two benchmarks run at different moments are not
// comparable, their CPU throughputs are.
func reportCPU(b *testing.B, start time.Duration, n int) {
	if cpu := cpuTime() - start; cpu > 0 {
		b.ReportMetric(float64(n)*float64(b.N)/cpu.Seconds()/1e6, "cpuMB/s")
	}
}

func BenchmarkSHA256(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	h := sha256.New()
	start := cpuTime()
	for b.Loop() {
		h.Reset()
		h.Write(data)
		_ = h.Sum(nil)
	}
	reportCPU(b, start, len(data))
}

func BenchmarkFsverity(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	h := New()
	start := cpuTime()
	for b.Loop() {
		h.Reset()
		h.Write(data)
		_ = h.Sum32()
	}
	reportCPU(b, start, len(data))
}

// BenchmarkFsverityChunked writes in 32 KiB chunks, as io.Copy does.
func BenchmarkFsverityChunked(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	h := New()
	start := cpuTime()
	for b.Loop() {
		h.Reset()
		for i := 0; i < len(data); i += 32 << 10 {
			h.Write(data[i : i+32<<10])
		}
		_ = h.Sum32()
	}
	reportCPU(b, start, len(data))
}
