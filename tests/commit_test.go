package tests

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestContainerCommit changes a container's files (new file, append, a
// chmod that overlay copies up as metadata only, deletions of a file and
// a directory, a file rename), commits the container layer as a new image
// layer the way `podman commit` does (Diff, then PutLayer), and checks
// that a container of the new image shows exactly what the changed
// container showed, on cfs as on overlay.
func TestContainerCommit(t *testing.T) {
	testutil.RequireRoot(t)
	tars := layerTars(t)
	views, whiteouts := map[string][]string{}, map[string][]string{}
	for _, driver := range []string{"overlay", "cfs"} {
		store := openStore(t, driver)
		parent := putLayers(t, store, "", tars...)
		ctr, mnt, unmount := mountNewContainer(t, store, parent)
		changeContainer(t, mnt)
		before, err := testutil.ListTree(mnt)
		if err != nil {
			t.Fatal(err)
		}
		unmount()
		changes, err := store.Changes("", ctr.LayerID)
		if err != nil {
			t.Fatalf("%s: changes: %v", driver, err)
		}
		if !hasChange(changes, "/usr/bin/ping", archive.ChangeModify) || !hasChange(changes, "/etc/passwd", archive.ChangeDelete) {
			t.Errorf("%s: changes miss the chmod or the deletion: %v", driver, changes)
		}
		c := archive.Uncompressed
		rc, err := store.Diff("", ctr.LayerID, &storage.DiffOptions{Compression: &c})
		if err != nil {
			t.Fatalf("%s: diff of the container layer: %v", driver, err)
		}
		diff, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		whiteouts[driver] = whiteoutHeaders(t, diff)
		committed := putLayers(t, store, parent, diff)
		_, mnt2, unmount2 := mountNewContainer(t, store, committed)
		after, err := testutil.ListTree(mnt2)
		if err != nil {
			t.Fatal(err)
		}
		unmount2()
		before, after = withoutNlink(before[1:]), withoutNlink(after[1:])
		if !slices.Equal(before, after) {
			t.Fatalf("%s: committed image differs from the container it came from:\n--- container\n%s\n--- committed\n%s",
				driver, strings.Join(before, "\n"), strings.Join(after, "\n"))
		}
		views[driver] = after
	}
	// Whiteouts and opaque markers are written as overlay writes them,
	// and only where overlay writes them.
	if !slices.Equal(whiteouts["overlay"], whiteouts["cfs"]) {
		t.Errorf("whiteout entries of the committed layer differ:\n--- overlay\n%s\n--- cfs\n%s",
			strings.Join(whiteouts["overlay"], "\n"), strings.Join(whiteouts["cfs"], "\n"))
	}
	// What the container changed carries the time of the change, which
	// differs between the two runs.
	if !slices.Equal(withoutRunMtimes(views["overlay"]), withoutRunMtimes(views["cfs"])) {
		t.Fatalf("committed trees differ between overlay and cfs:\n--- overlay\n%s\n--- cfs\n%s",
			strings.Join(views["overlay"], "\n"), strings.Join(views["cfs"], "\n"))
	}
}

func changeContainer(t *testing.T, root string) {
	t.Helper()
	in := func(p string) string { return filepath.Join(root, p) }
	steps := []func() error{
		func() error { return os.WriteFile(in("etc/new.conf"), []byte("written in the container\n"), 0o600) },
		func() error {
			f, err := os.OpenFile(in("usr/lib/libcopy.so"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("appended")
			return err
		},
		func() error { return os.Chmod(in("usr/bin/ping"), 0o700) }, // metadata-only copy-up
		func() error { return os.Remove(in("etc/passwd")) },
		func() error { return os.RemoveAll(in("becomes-dir")) },
		func() error { return os.Rename(in("owned"), in("owned-renamed")) },
		func() error { return os.Symlink("/etc/new.conf", in("etc/link")) },
		func() error { return os.RemoveAll(in("etc/small.d")) }, // re-made below: opaque
		func() error { return os.Mkdir(in("etc/small.d"), 0o750) },
		func() error { return os.WriteFile(in("etc/small.d/fresh"), []byte("fresh"), 0o644) },
		func() error { return os.MkdirAll(in("brand/new"), 0o755) }, // nothing below: not opaque
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
}

func hasChange(changes []archive.Change, path string, kind archive.ChangeType) bool {
	for _, c := range changes {
		if c.Path == path && c.Kind == kind {
			return true
		}
	}
	return false
}

// withoutRunMtimes drops mtimes other than the fixtures' (tarfix.Epoch).
func withoutRunMtimes(lines []string) []string {
	epoch := fmt.Sprintf("mtime=%d", tarfix.Epoch.Unix())
	out := make([]string, len(lines))
	for i, l := range lines {
		fields := strings.Fields(l)
		fields = slices.DeleteFunc(fields, func(f string) bool { return strings.HasPrefix(f, "mtime=") && f != epoch })
		out[i] = strings.Join(fields, " ")
	}
	return out
}

// whiteoutHeaders lists the whiteout and opaque-marker entries of a
// layer tar: name, mode and owner, sorted.
func whiteoutHeaders(t *testing.T, layer []byte) []string {
	t.Helper()
	hs, err := tarfix.Headers(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range hs {
		if strings.HasPrefix(path.Base(h.Name), ".wh.") {
			out = append(out, fmt.Sprintf("%s mode=%o owner=%d:%d", strings.TrimPrefix(h.Name, "./"), h.Mode, h.Uid, h.Gid))
		}
	}
	slices.Sort(out)
	return out
}
