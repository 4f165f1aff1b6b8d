package scenario

import (
	"slices"
	"testing"
	"time"
)

// TestApplyNames checks the flattened-tree count used by the lower
// bound: whiteouts remove a path and its subtree, opaque markers a
// directory's earlier children.
func TestApplyNames(t *testing.T) {
	tree := map[string]bool{}
	applyNames(tree, []string{"etc", "etc/a", "etc/b", "usr", "usr/lib", "usr/lib/x", "usr/lib/y", "opt", "opt/o"})
	applyNames(tree, []string{"usr", "usr/.wh.lib", "etc", "etc/.wh.a", "opt", "opt/.wh..wh..opq", "opt/n"})
	var got []string
	for k := range tree {
		got = append(got, k)
	}
	slices.Sort(got)
	want := []string{"etc", "etc/b", "opt", "opt/n", "usr"}
	if !slices.Equal(got, want) {
		t.Fatalf("flattened tree %q, want %q", got, want)
	}
}

// TestPercentile checks nearest-rank percentiles.
func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 20; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got := median(d); got != 10*time.Millisecond {
		t.Errorf("median = %v, want 10ms", got)
	}
	if got := percentile(d, 95); got != 19*time.Millisecond {
		t.Errorf("p95 = %v, want 19ms", got)
	}
	if d[0] != 20*time.Millisecond {
		t.Error("percentile sorted its input in place")
	}
}

// TestRotated checks every driver leads one round in turn.
func TestRotated(t *testing.T) {
	s := []*benchStore{{label: "a"}, {label: "b"}, {label: "c"}}
	var firsts []string
	for i := range 4 {
		r := rotated(s, i)
		if len(r) != 3 {
			t.Fatalf("round %d: %d stores", i, len(r))
		}
		firsts = append(firsts, r[0].label)
	}
	if !slices.Equal(firsts, []string{"a", "b", "c", "a"}) {
		t.Fatalf("first of each round %q", firsts)
	}
}

// TestPartialColumns checks that overlay-ostree gets a column, after
// the overlay columns, only when the partial-pull scenario runs on
// overlay.
func TestPartialColumns(t *testing.T) {
	for _, c := range []struct {
		drivers []string
		on      bool
		want    []string
	}{
		{Drivers, true, []string{"cfs", "cfs-nohost", "overlay", "overlay-composefs", OstreeReposDriver, "vfs"}},
		{Drivers, false, Drivers},
		{[]string{"cfs", "overlay"}, true, []string{"cfs", "overlay", OstreeReposDriver}},
		{[]string{"overlay", "cfs"}, true, []string{"overlay", OstreeReposDriver, "cfs"}},
		{[]string{"cfs", "overlay-composefs"}, true, []string{"cfs", "overlay-composefs"}},
	} {
		before := slices.Clone(c.drivers)
		if got := partialColumns(c.drivers, c.on); !slices.Equal(got, c.want) {
			t.Errorf("partialColumns(%q, %v) = %q, want %q", c.drivers, c.on, got, c.want)
		}
		if !slices.Equal(c.drivers, before) {
			t.Errorf("partialColumns changed its input to %q", c.drivers)
		}
	}
}
