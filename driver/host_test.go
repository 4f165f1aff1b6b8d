package driver

import (
	"testing"

	"github.com/cfs-storage/cfs-storage/dedup"
)

func TestHostStatus(t *testing.T) {
	if got := hostStatusLines(nil, dedup.Stats{}); len(got) != 1 || got[0] != [2]string{"Host repo", "none"} {
		t.Errorf("without a host repository: %v", got)
	}
	h := newHostShare("/home", Options{HostRepo: "/sysroot/ostree/repo", HostLink: "auto", InlineThreshold: 64})
	st := dedup.Stats{ByMode: map[dedup.LinkMode]dedup.ModeCount{
		dedup.LinkHardlink: {Objects: 3}, dedup.LinkReflink: {Objects: 2}, dedup.LinkCopy: {Objects: 1}, dedup.LinkWritten: {Objects: 9},
	}}
	want := [][2]string{
		{"Host repo", "/sysroot/ostree/repo"},
		{"Host link", "auto"},
		{"Host-linked objects (hardlink/reflink/copy)", "3/2/1"},
	}
	got := hostStatusLines(h, st)
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %v, want %v", i, got[i], want[i])
		}
	}
	if h.stagingDir != "/home/hostlink/staging" {
		t.Errorf("staging directory %s", h.stagingDir)
	}
	if newHostShare("/home", Options{HostRepo: "/r", HostLink: "off"}) != nil {
		t.Error("host_link=off still shares")
	}
}
