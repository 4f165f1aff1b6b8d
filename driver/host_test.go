package driver

import (
	"testing"

	"github.com/cfs-storage/cfs-storage/dedup"
)

func TestHostStatusLines(t *testing.T) {
	var none *hostShare
	if got := none.statusLines(dedup.Stats{}); got != nil {
		t.Errorf("without a host repository: %v", got)
	}
	h := newHostShare("/home", Options{HostRepo: "/sysroot/ostree/repo", HostLink: dedup.LinkAuto, InlineThreshold: 64})
	st := dedup.Stats{ByMode: map[dedup.LinkMode]dedup.ModeCount{
		dedup.LinkHardlink: {Objects: 3}, dedup.LinkReflink: {Objects: 2}, dedup.LinkCopy: {Objects: 1}, dedup.LinkWritten: {Objects: 9},
	}, Alternates: dedup.AlternateStats{Declined: dedup.ModeCount{Objects: 7}, Failed: dedup.ModeCount{Objects: 1}}}
	got := h.statusLines(st)
	want := [][2]string{
		{"Host-linked objects (hardlink/reflink/copy)", "3/2/1"},
		{"Host lookups not linked (declined/failed)", "7/1"},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v, want %v (no staging line before the stager opens)", got, want)
	}
	st.Alternates.LastError = "index: permission denied"
	if got := h.statusLines(st); len(got) != 3 || got[2] != [2]string{"Host lookup last error", "index: permission denied"} {
		t.Errorf("with a lookup error: %v", got)
	}
	if h.stagingDir != "/home/hostlink/staging" {
		t.Errorf("staging directory %s", h.stagingDir)
	}
	if newHostShare("/home", Options{HostRepo: "/r", HostLink: dedup.LinkNone}) != nil {
		t.Error("host_link=off still shares")
	}
}
