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
	}}
	got := h.statusLines(st)
	if want := [2]string{"Host-linked objects (hardlink/reflink/copy)", "3/2/1"}; len(got) != 1 || got[0] != want {
		t.Errorf("got %v, want [%v] (no staging line before the stager opens)", got, want)
	}
	if h.stagingDir != "/home/hostlink/staging" {
		t.Errorf("staging directory %s", h.stagingDir)
	}
	if newHostShare("/home", Options{HostRepo: "/r", HostLink: dedup.LinkNone}) != nil {
		t.Error("host_link=off still shares")
	}
}
