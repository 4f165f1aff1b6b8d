package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/report"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/scenario"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestMain lets containers/storage re-execute the test binary for its
// helpers (the overlay driver unpacks layers in a chroot child).
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// TestQuickBench runs the whole benchmark on the quick corpus and checks
// that the JSON has every scenario on every driver with plausible
// numbers, and that the report files are there.
func TestQuickBench(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"ostree", "ldd"} {
		testutil.RequireTool(t, tool)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"--quick", "--runs", "2", "--cache", filepath.Join(dir, "cache"), "--out", out}
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("cfs-storage-bench %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "[pull] cfs: image 2/4") {
		t.Errorf("no progress lines on stderr:\n%s", stderr.String())
	}
	for _, f := range []string{"report.md", "table.txt", "chart-pull.svg", "chart-disk.svg", "chart-start.svg", "chart-memory.svg", "chart-depth.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("report file %s missing or empty: %v", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res report.Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	checkPlausible(t, &res)
}

// checkPlausible checks every scenario × driver has its metrics in
// sensible ranges.
func checkPlausible(t *testing.T, res *report.Results) {
	t.Helper()
	between := func(sc, drv, metric string, lo, hi float64) {
		t.Helper()
		v, ok := res.Find(sc, drv, metric)
		if !ok {
			t.Errorf("%s/%s: no %q", sc, drv, metric)
			return
		}
		if v < lo || v > hi {
			t.Errorf("%s/%s: %s = %g, want within [%g, %g]", sc, drv, metric, v, lo, hi)
		}
	}
	const mib = 1 << 20
	for _, d := range scenario.Drivers {
		between("pull", d, "time", 0.01, 120)
		between("pull", d, "bytes written", 1*mib, 500*mib)
		between("disk", d, "host + images", 5*mib, 500*mib)
		between("disk", d, "÷ lower bound", 0.8, 20)
		between("start", d, "warm median", 1, 30000)
		between("start", d, "warm p95", 1, 30000)
		between("start", d, "cold median (true)", 1, 30000)
		between("memory", d, "bytes read by the container", 1*mib, 500*mib)
		between("memory", d, "file data newly cached (mincore)", 0, 500*mib)
		for _, depth := range scenario.QuickDepths {
			name := strconv.Itoa(depth) + " layers"
			if depth == 1 {
				name = "1 layer"
			}
			between("depth", d, "mount, "+name+" (median)", 0.01, 10000)
			between("depth", d, "start, "+name+" (median)", 1, 30000)
		}
	}
	// Host deduplication must show: cfs with the host repo stores less
	// than cfs without it, and the container's reads of files the host
	// has cached add almost no file data to the page cache.
	withHost, _ := res.Find("disk", "cfs", "host + images")
	noHost, _ := res.Find("disk", "cfs-nohost", "host + images")
	if withHost >= noHost {
		t.Errorf("disk: cfs with host_repo uses %g bytes, not less than cfs-nohost's %g", withHost, noHost)
	}
	cached, _ := res.Find("memory", "cfs", "file data newly cached (mincore)")
	overlay, _ := res.Find("memory", "overlay", "file data newly cached (mincore)")
	if cached > overlay/10 {
		t.Errorf("memory: cfs newly cached %g bytes of file data, overlay %g: want under 10%%", cached, overlay)
	}
}
