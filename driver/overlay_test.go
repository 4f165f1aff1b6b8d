package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// oddRoot is a directory name with every character the classic overlay
// option string treats specially.
const oddRoot = `odd,dir:with\chars`

// TestOddGraphRoot: a graph root and run root holding ',' ':' and '\'
// pull, mount and write like any other.
func TestOddGraphRoot(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), oddRoot)
	c, err := newCore(filepath.Join(dir, "home"), filepath.Join(dir, "run"), defaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close() })
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f", strings.Repeat("content ", 100))))
	ctx := context.Background()
	must(t, c.create(ctx, "ctr", "base", containerLayer))
	mnt, err := c.get(ctx, "ctr", mountOptions{})
	if err != nil {
		t.Fatalf("mount under %q: %v", dir, err)
	}
	defer c.put("ctr")
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != strings.Repeat("content ", 100) {
		t.Fatalf("read through the mount: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(mnt, "g"), []byte("g"), 0o644))
}

// TestLegacyMountEscapesPaths: the mount(2) fallback for kernels without
// "lowerdir+" escapes the paths as overlayfs reads them.
func TestLegacyMountEscapesPaths(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), oddRoot)
	spec := overlaySpec{Lower: filepath.Join(dir, "lower"), Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
	target := filepath.Join(dir, "merged")
	for _, d := range []string{spec.Lower, spec.Upper, spec.Work, target} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(spec.Lower, "f"), []byte("lower"), 0o644))
	if err := legacyMountOverlay(target, spec); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	if got, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(got) != "lower" {
		t.Fatalf("read through the escaped mount: %q %v", got, err)
	}
}

// TestMountoptFlags: mountopt's flag names (nodev, nosuid, noexec) are
// mount flags, not overlay options; data options still reach overlay.
func TestMountoptFlags(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	opts, err := ParseOptions([]string{"mountopt=nodev,metacopy=on"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := newCore(filepath.Join(dir, "home"), filepath.Join(dir, "run"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close() })
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f", "x")))
	ctx := context.Background()
	must(t, c.create(ctx, "ctr", "base", containerLayer))
	// The driver's mountopt, then a mount's own options in its place (as
	// overlay's get takes them).
	mnt, err := c.get(ctx, "ctr", mountOptions{})
	if err != nil {
		t.Fatalf("mount with mountopt nodev: %v", err)
	}
	var st unix.Statfs_t
	must(t, unix.Statfs(mnt, &st))
	if st.Flags&unix.ST_NODEV == 0 {
		t.Errorf("mount lacks the driver's nodev (flags %#x)", st.Flags)
	}
	must(t, c.put("ctr"))
	mnt, err = c.get(ctx, "ctr", mountOptions{Extra: []string{"nodev", "nosuid", "noexec"}})
	if err != nil {
		t.Fatalf("mount with nodev,nosuid,noexec: %v", err)
	}
	defer c.put("ctr")
	must(t, unix.Statfs(mnt, &st))
	for name, flag := range map[string]int64{"nodev": unix.ST_NODEV, "nosuid": unix.ST_NOSUID, "noexec": unix.ST_NOEXEC} {
		if st.Flags&flag == 0 {
			t.Errorf("mount lacks %s (flags %#x)", name, st.Flags)
		}
	}
}
