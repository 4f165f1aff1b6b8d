package driver

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// writeEmptyRepo makes dir a valid, empty bare-user ostree repository.
func writeEmptyRepo(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("[core]\nrepo_version=1\nmode=bare-user\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A host repository that fails to open is retried once retryAfter has
// passed, not cached as failed for the life of the process; until then
// the failure is returned without trying again.
func TestHostShareRetriesOpen(t *testing.T) {
	ctx := context.Background()
	home, repo := t.TempDir(), filepath.Join(t.TempDir(), "repo")
	h := newHostShare(home, Options{HostRepo: repo, HostLink: dedup.LinkCopy, InlineThreshold: 64})
	defer h.close()
	h.retryAfter = time.Hour
	if _, err := h.insertOptions(ctx); err == nil {
		t.Fatal("a missing host repository opened")
	}
	writeEmptyRepo(t, repo)
	if _, err := h.insertOptions(ctx); err == nil {
		t.Fatal("the failure was not kept until retryAfter passed")
	}
	h.retryAfter = 0
	opts, err := h.insertOptions(ctx)
	if err != nil {
		t.Fatalf("after retryAfter: %v", err)
	}
	if opts.Alternate == nil || !opts.TrustAlternate || opts.AlternateMode != dedup.LinkCopy {
		t.Fatalf("insert options %+v", opts)
	}
}

// When the index opens but the stager does not, a retry opens the
// stager and keeps the index.
func TestHostShareRetriesStager(t *testing.T) {
	ctx := context.Background()
	home, repo := t.TempDir(), filepath.Join(t.TempDir(), "repo")
	writeEmptyRepo(t, repo)
	h := newHostShare(home, Options{HostRepo: repo, HostLink: dedup.LinkAuto, InlineThreshold: 64})
	defer h.close()
	h.retryAfter = 0
	// A file where the staging directory goes: the stager cannot start.
	os.MkdirAll(filepath.Dir(h.stagingDir), 0o755)
	if err := os.WriteFile(h.stagingDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.open(ctx); err == nil {
		t.Fatal("the stager started over a file")
	}
	index := h.index
	if index == nil || h.staged.Load() != nil {
		t.Fatalf("index %v, stager %v: want the index open and no stager", index, h.staged.Load())
	}
	os.Remove(h.stagingDir)
	gotIndex, stager, err := h.open(ctx)
	if err != nil || stager == nil || gotIndex != index || h.staged.Load() != stager {
		t.Fatalf("retry: index %p (was %p), stager %v, %v", gotIndex, index, stager, err)
	}
}

// The host Alternate of an empty repository finds nothing and fails no
// lookup.
func TestHostAlternateNotFound(t *testing.T) {
	ctx := context.Background()
	home, repo := t.TempDir(), filepath.Join(t.TempDir(), "repo")
	writeEmptyRepo(t, repo)
	h := newHostShare(home, Options{HostRepo: repo, HostLink: dedup.LinkReflink, InlineThreshold: 64})
	defer h.close()
	opts, err := h.insertOptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, found, err := opts.Alternate.Find(ctx, dedup.Digest{1}, 100, nil)
	if found || err != nil || c.Path != "" {
		t.Fatalf("Find in an empty repository: %+v, %v, %v", c, found, err)
	}
}
