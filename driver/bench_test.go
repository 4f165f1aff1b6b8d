package driver

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	graphdriver "go.podman.io/storage/drivers"
	_ "go.podman.io/storage/drivers/overlay" // the reference driver
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// Benchmarks run cfs and c/storage's overlay driver on the same work in
// the same iteration and report both latencies and their ratio
// (cfs/overlay: below 1 means cfs is faster).
//
//	go test -tags containers_image_openpgp,exclude_graphdriver_btrfs -run '^$' -bench . ./driver

func benchDriver(b *testing.B, name string) graphdriver.Driver {
	b.Helper()
	testutil.RequireRoot(b)
	dir := b.TempDir()
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	for _, p := range []string{root, run} {
		if err := os.Mkdir(p, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	d, err := graphdriver.GetDriver(name, graphdriver.Options{Root: root, RunRoot: run})
	if err != nil {
		b.Fatalf("%s driver: %v", name, err)
	}
	b.Cleanup(func() { d.Cleanup() })
	return d
}

// randomLayer is a layer tar of n files of size bytes of random content.
func randomLayer(b *testing.B, rng *rand.Rand, n, size int) []byte {
	return randomLayerT(b, rng, n, size)
}

func randomLayerT(b testing.TB, rng *rand.Rand, n, size int) []byte {
	b.Helper()
	entries := []tarfix.Entry{tarfix.Dir("usr/"), tarfix.Dir("usr/lib/")}
	for i := 0; i < n; i++ {
		buf := make([]byte, size)
		rng.Read(buf)
		entries = append(entries, tarfix.File(fmt.Sprintf("usr/lib/f%04d", i), string(buf)))
	}
	tarball, err := tarfix.Tar(entries...)
	if err != nil {
		b.Fatal(err)
	}
	return tarball
}

type timed struct {
	name string
	d    graphdriver.Driver
	sum  time.Duration
}

func report(b *testing.B, cfs, overlay *timed) {
	n := float64(b.N)
	b.ReportMetric(float64(cfs.sum.Nanoseconds())/n, "cfs-ns/op")
	b.ReportMetric(float64(overlay.sum.Nanoseconds())/n, "overlay-ns/op")
	b.ReportMetric(float64(cfs.sum)/float64(overlay.sum), "cfs/overlay")
}

// BenchmarkApplyDiff applies a 200-file, 12.8 MB layer: "new" content
// differs every iteration, "present" is the same content each time (cfs
// finds every object already stored).
func BenchmarkApplyDiff(b *testing.B) {
	for _, mode := range []string{"new", "present"} {
		b.Run(mode, func(b *testing.B) {
			drivers := []*timed{{name: "cfs", d: benchDriver(b, Name)}, {name: "overlay", d: benchDriver(b, "overlay")}}
			rng := rand.New(rand.NewSource(1))
			fixed := randomLayer(b, rng, 200, 64<<10)
			b.SetBytes(int64(len(fixed)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				tarball := fixed
				if mode == "new" {
					tarball = randomLayer(b, rng, 200, 64<<10)
				}
				b.StartTimer()
				for _, t := range drivers {
					id := fmt.Sprintf("%s-%d", mode, i)
					start := time.Now()
					if err := t.d.Create(id, "", nil); err != nil {
						b.Fatal(err)
					}
					if _, err := t.d.ApplyDiff(id, graphdriver.ApplyDiffOpts{Diff: bytes.NewReader(tarball)}); err != nil {
						b.Fatalf("%s: %v", t.name, err)
					}
					t.sum += time.Since(start)
				}
			}
			report(b, drivers[0], drivers[1])
		})
	}
}

// BenchmarkMount mounts (Get) and unmounts (Put) a container layer on an
// image of N layers, the image already mounted once (cfs has built its
// flattened image).
func BenchmarkMount(b *testing.B) {
	for _, depth := range []int{1, 10, 50, 100} {
		b.Run(fmt.Sprintf("layers=%d", depth), func(b *testing.B) {
			drivers := []*timed{{name: "cfs", d: benchDriver(b, Name)}, {name: "overlay", d: benchDriver(b, "overlay")}}
			rng := rand.New(rand.NewSource(2))
			for _, t := range drivers {
				parent := ""
				for l := 0; l < depth; l++ {
					id := fmt.Sprintf("layer%d", l)
					if err := t.d.Create(id, parent, nil); err != nil {
						b.Fatal(err)
					}
					if _, err := t.d.ApplyDiff(id, graphdriver.ApplyDiffOpts{Diff: bytes.NewReader(randomLayer(b, rng, 5, 4096))}); err != nil {
						b.Fatal(err)
					}
					parent = id
				}
				if err := t.d.CreateReadWrite("ctr", parent, nil); err != nil {
					b.Fatal(err)
				}
				if _, err := t.d.Get("ctr", graphdriver.MountOpts{}); err != nil {
					b.Fatalf("%s: %v", t.name, err)
				}
				if err := t.d.Put("ctr"); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, t := range drivers {
					start := time.Now()
					if _, err := t.d.Get("ctr", graphdriver.MountOpts{}); err != nil {
						b.Fatalf("%s: %v", t.name, err)
					}
					if err := t.d.Put("ctr"); err != nil {
						b.Fatalf("%s: %v", t.name, err)
					}
					t.sum += time.Since(start)
				}
			}
			report(b, drivers[0], drivers[1])
		})
	}
}

// BenchmarkContainerCycle is a container layer's life as a container
// start sees it: CreateReadWrite on an image's top layer, Get, Put,
// Remove, each phase timed on its own.
func BenchmarkContainerCycle(b *testing.B) {
	drivers := []*timed{{name: "cfs", d: benchDriver(b, Name)}, {name: "overlay", d: benchDriver(b, "overlay")}}
	rng := rand.New(rand.NewSource(3))
	layer := randomLayer(b, rng, 50, 4096)
	for _, t := range drivers {
		if err := t.d.Create("image", "", nil); err != nil {
			b.Fatal(err)
		}
		if _, err := t.d.ApplyDiff("image", graphdriver.ApplyDiffOpts{Diff: bytes.NewReader(layer)}); err != nil {
			b.Fatal(err)
		}
	}
	phases := []string{"create", "get", "put", "remove"}
	sums := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, t := range drivers {
			id := fmt.Sprintf("ctr%d", i)
			steps := []func() error{
				func() error { return t.d.CreateReadWrite(id, "image", nil) },
				func() error { _, err := t.d.Get(id, graphdriver.MountOpts{}); return err },
				func() error { return t.d.Put(id) },
				func() error { return t.d.Remove(id) },
			}
			if sums[t.name] == nil {
				sums[t.name] = make([]time.Duration, len(steps))
			}
			for k, step := range steps {
				start := time.Now()
				if err := step(); err != nil {
					b.Fatalf("%s: %s: %v", t.name, phases[k], err)
				}
				sums[t.name][k] += time.Since(start)
			}
		}
	}
	n := float64(b.N)
	var cfsTotal, overlayTotal time.Duration
	for k, p := range phases {
		c, o := sums["cfs"][k], sums["overlay"][k]
		cfsTotal, overlayTotal = cfsTotal+c, overlayTotal+o
		b.ReportMetric(float64(c.Nanoseconds())/n, "cfs-"+p+"-ns/op")
		b.ReportMetric(float64(c)/float64(o), p+"-cfs/overlay")
	}
	b.ReportMetric(float64(cfsTotal)/float64(overlayTotal), "cfs/overlay")
}

// BenchmarkApplyDiffSparse applies a layer holding one 256 MiB file of
// zeros with 4 KiB of data in its middle (a disk image, say), streamed,
// and reports the time and the bytes each driver's store allocates (its
// whole home, images included): cfs leaves the zero blocks as holes in
// the object.
//
//	go test -tags containers_image_openpgp,exclude_graphdriver_btrfs -run '^$' -bench ApplyDiffSparse -benchtime 3x ./driver
func BenchmarkApplyDiffSparse(b *testing.B) {
	const size = 256 << 20
	drivers := []*timed{{name: "cfs", d: benchDriver(b, Name)}, {name: "overlay", d: benchDriver(b, "overlay")}}
	alloc := make([]int64, len(drivers))
	b.SetBytes(size)
	for i := 0; i < b.N; i++ {
		for k, t := range drivers {
			id := fmt.Sprintf("sparse-%d", i)
			start := time.Now()
			if err := t.d.Create(id, "", nil); err != nil {
				b.Fatal(err)
			}
			if _, err := t.d.ApplyDiff(id, graphdriver.ApplyDiffOpts{Diff: sparseLayer(b, size)}); err != nil {
				b.Fatalf("%s: %v", t.name, err)
			}
			t.sum += time.Since(start)
			alloc[k] = allocatedBytes(b, t.d)
		}
	}
	report(b, drivers[0], drivers[1])
	// Per layer applied (cfs stores the repeated content once).
	b.ReportMetric(float64(alloc[0])/float64(b.N), "cfs-allocated-B/op")
	b.ReportMetric(float64(alloc[1])/float64(b.N), "overlay-allocated-B/op")
}

// sparseLayer streams a tar of one file of size bytes, all zero but for
// 4 KiB of data in the middle.
func sparseLayer(b *testing.B, size int64) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "disk.img", Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: tarfix.Epoch})
		data := bytes.Repeat([]byte("data"), 1024)
		if err == nil {
			_, err = io.CopyN(tw, zeroReader{}, size/2)
		}
		if err == nil {
			_, err = tw.Write(data)
		}
		if err == nil {
			_, err = io.CopyN(tw, zeroReader{}, size-size/2-int64(len(data)))
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// allocatedBytes sums the disk blocks of the regular files under the
// driver's home.
func allocatedBytes(b *testing.B, d graphdriver.Driver) int64 {
	home := ""
	if ext, ok := AsExtension(d); ok {
		home = ext.Home()
	} else if md, err := d.Metadata("sparse-0"); err == nil {
		home = filepath.Dir(filepath.Dir(md["UpperDir"]))
	}
	var total int64
	err := filepath.WalkDir(home, func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == nil {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}

// BenchmarkFirstMount is a container's first mount on an image of N
// layers just pulled (nothing of it mounted before: cfs builds the
// chain's flattened image): CreateReadWrite, Get and Put, timed.
func BenchmarkFirstMount(b *testing.B) {
	for _, depth := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("layers=%d", depth), func(b *testing.B) {
			drivers := []*timed{{name: "cfs", d: benchDriver(b, Name)}, {name: "overlay", d: benchDriver(b, "overlay")}}
			rng := rand.New(rand.NewSource(3))
			tars := make([][]byte, depth)
			for l := range tars {
				tars[l] = randomLayer(b, rng, 20, 4096)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, t := range drivers {
					b.StopTimer()
					parent := ""
					for l := 0; l < depth; l++ {
						id := fmt.Sprintf("i%d-layer%d", i, l)
						if err := t.d.Create(id, parent, nil); err != nil {
							b.Fatal(err)
						}
						if _, err := t.d.ApplyDiff(id, graphdriver.ApplyDiffOpts{Diff: bytes.NewReader(tars[l])}); err != nil {
							b.Fatal(err)
						}
						parent = id
					}
					ctr := fmt.Sprintf("i%d-ctr", i)
					b.StartTimer()
					start := time.Now()
					if err := t.d.CreateReadWrite(ctr, parent, nil); err != nil {
						b.Fatal(err)
					}
					if _, err := t.d.Get(ctr, graphdriver.MountOpts{}); err != nil {
						b.Fatalf("%s: %v", t.name, err)
					}
					if err := t.d.Put(ctr); err != nil {
						b.Fatal(err)
					}
					t.sum += time.Since(start)
				}
			}
			report(b, drivers[0], drivers[1])
		})
	}
}
