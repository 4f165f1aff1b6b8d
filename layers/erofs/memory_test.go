package erofs

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestWriterMemory bounds what writing the cs9-x86_64-developer image
// (64,246 entries, most of them external files) costs beyond the parsed
// tree: the plan's live heap and the bytes Write allocates. Together with
// the tree they make mkcomposefs' peak (see tests' TestMkcomposefsPeakRSS).
// Before the plan stopped storing each file's metacopy and redirect values
// and counting xattr pairs in maps of copied keys, the plan held 27 MiB
// and Write allocated 37 MiB.
func TestWriterMemory(t *testing.T) {
	var dump []byte
	for _, c := range corpusCases(t) {
		if c.name == "cs9-x86_64-developer.dump.gz" {
			dump = testutil.ReadCorpusFile(t, c.path)
		}
	}
	if dump == nil {
		t.Fatal("cs9-x86_64-developer.dump.gz not in the corpus")
	}
	tr, err := dumpfile.Parse(bytes.NewReader(dump), dumpfile.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	dump = nil
	var m runtime.MemStats
	live := func() uint64 {
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := live()
	p, err := newPlan(tr, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	after := live()
	planLive := after - min(before, after)
	runtime.KeepAlive(p)
	p = nil
	live()
	alloc0 := m.TotalAlloc
	if err := Write(io.Discard, tr, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m)
	allocated := m.TotalAlloc - alloc0
	t.Logf("plan live %.1f MiB, Write allocated %.1f MiB", float64(planLive)/(1<<20), float64(allocated)/(1<<20))
	const mib = 1 << 20
	if planLive > 16*mib {
		t.Errorf("the plan holds %.1f MiB, want at most 16", float64(planLive)/mib)
	}
	if allocated > 24*mib {
		t.Errorf("Write allocated %.1f MiB, want at most 24", float64(allocated)/mib)
	}
	runtime.KeepAlive(tr)
}
