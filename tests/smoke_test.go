package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestSmokeErofsOverlayDataOnlyLower builds an EROFS image with mkfs.erofs
// holding one plain file and one metacopy file redirected into an object
// directory, mounts the image straight from its file, stacks an overlay
// with the objects as a data-only lower, and reads both files through it.
func TestSmokeErofsOverlayDataOnlyLower(t *testing.T) {
	testutil.RequireRoot(t)
	mkfs := testutil.RequireTool(t, "mkfs.erofs")
	dir := t.TempDir()
	src, objects := filepath.Join(dir, "src"), filepath.Join(dir, "objects")
	erofsMnt, merged := filepath.Join(dir, "erofs"), filepath.Join(dir, "merged")
	for _, d := range []string{src, filepath.Join(objects, "3f"), erofsMnt, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const objContent, plainContent = "content from the object store\n", "inline in the image\n"
	writeFile(t, filepath.Join(objects, "3f", "00aa"), objContent)
	writeFile(t, filepath.Join(src, "plain"), plainContent)
	stub := filepath.Join(src, "external")
	writeFile(t, stub, "")
	if err := os.Truncate(stub, int64(len(objContent))); err != nil {
		t.Fatal(err)
	}
	setXattr(t, stub, "trusted.overlay.redirect", "/3f/00aa")
	setXattr(t, stub, "trusted.overlay.metacopy", "")

	image := filepath.Join(dir, "image.erofs")
	if out, err := exec.Command(mkfs, image, src).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v\n%s", err, out)
	}
	testutil.MountErofs(t, image, erofsMnt)
	testutil.MountOverlay(t, testutil.Overlay{Lower: []string{erofsMnt}, DataLower: []string{objects}}, merged)

	for name, want := range map[string]string{"plain": plainContent, "external": objContent} {
		got, err := os.ReadFile(filepath.Join(merged, name))
		if err != nil {
			t.Fatalf("read %s through overlay: %v", name, err)
		}
		if string(got) != want {
			t.Errorf("%s through overlay = %q, want %q", name, got, want)
		}
	}
	// Without the data-only lower the metacopy file has no data to serve:
	// the erofs mount alone shows the stub's size but reads no content.
	if got, _ := os.ReadFile(filepath.Join(erofsMnt, "external")); string(got) == objContent {
		t.Errorf("erofs stub served the object's content by itself; the overlay was not exercised")
	}
	if ok, err := testutil.MountedAt(merged); err != nil || !ok {
		t.Fatalf("overlay not listed in mountinfo at %s (err %v)", merged, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func setXattr(t *testing.T, path, name, value string) {
	t.Helper()
	if err := unix.Setxattr(path, name, []byte(value), 0); err != nil {
		t.Fatalf("setxattr %s on %s: %v", name, path, err)
	}
}
