package composefs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	g := &app.Globals{Stdout: &out, Stderr: &errOut}
	for _, c := range Commands() {
		if c.Name == name {
			err := c.Run(context.Background(), g, args)
			return out.String(), err
		}
	}
	t.Fatalf("no command %s", name)
	return "", nil
}

// plainDump writes the corpus file (gunzipped) to a temp file.
func plainDump(t *testing.T, path string) string {
	t.Helper()
	data := testutil.ReadCorpusFile(t, path)
	p := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(path), ".gz"))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMkcomposefsCorpus runs the command as the corpus README says the
// reference runs, and checks each image's sha256; then dumps the image
// with composefs-info, rebuilds from that dump and gets the same bytes.
func TestMkcomposefsCorpus(t *testing.T) {
	n := 0
	for _, c := range testutil.CorpusCases(t) {
		if c.ShouldFail() {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			args := []string{}
			if c.Version >= 0 {
				ver := strconv.Itoa(c.Version)
				args = append(args, "--min-version="+ver, "--max-version="+ver)
			}
			// As the reference's tests run it: CFS_PARSE_STRICT set for
			// every file but the lenient three, unset for those.
			setStrict(t, c.Strict)
			dump := plainDump(t, c.Path)
			img := filepath.Join(t.TempDir(), "image")
			if _, err := run(t, "mkcomposefs", append(args, "--from-file", dump, img)...); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(img)
			sum := sha256.Sum256(data)
			if got := hex.EncodeToString(sum[:]); got != c.SHA256 {
				t.Fatalf("image sha256 %s, want %s", got, c.SHA256)
			}
			// composefs-info's dump fed back to mkcomposefs gives the same
			// bytes, once every hard-linked node's primary entry is the
			// first met in depth-first order (the dump makes it so).
			setStrict(t, true)
			img2 := rebuild(t, args, img)
			if !primariesFirst(t, dump) {
				t.Logf("a hard link is met before its primary entry: checking the second round")
				data, _ = os.ReadFile(img2)
				img2 = rebuild(t, args, img2)
			}
			if data2, _ := os.ReadFile(img2); !bytes.Equal(data, data2) {
				t.Fatalf("dump → image → dump → image changed the bytes")
			}
		})
	}
	if n < 10 {
		t.Fatalf("only %d expected checksums in the corpus", n)
	}
}

// setStrict sets CFS_PARSE_STRICT for the test, or unsets it, restoring
// the caller's value afterwards.
func setStrict(t *testing.T, strict bool) {
	t.Setenv(StrictEnv, "1")
	if !strict {
		os.Unsetenv(StrictEnv)
	}
}

// TestMkcomposefsStrictEnv: mkcomposefs parses as libcomposefs' does,
// leniently unless CFS_PARSE_STRICT is set, to any value. The dump is
// as c/storage's composefs mode writes them (a symlink's SIZE is the tar
// header's 0) and lacks its final newline; leniently it builds the image
// of the strict form of the same tree.
func TestMkcomposefsStrictEnv(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.dump")
	exact := filepath.Join(dir, "exact.dump")
	os.WriteFile(loose, []byte("/ 0 40755 2 0 0 0 0.0 - - -\n/link 0 120777 1 0 0 0 0.0 target - -"), 0o644)
	os.WriteFile(exact, []byte("/ 0 40755 2 0 0 0 0.0 - - -\n/link 6 120777 1 0 0 0 0.0 target - -\n"), 0o644)
	build := func(t *testing.T, dump string) ([]byte, error) {
		img := filepath.Join(t.TempDir(), "image")
		if _, err := run(t, "mkcomposefs", "--from-file", dump, img); err != nil {
			return nil, err
		}
		return os.ReadFile(img)
	}
	setStrict(t, true)
	want, err := build(t, exact)
	if err != nil {
		t.Fatal(err)
	}
	// The image gets the mode the reference's fopen gives it.
	old := syscall.Umask(0o027)
	img := filepath.Join(t.TempDir(), "image")
	_, err = run(t, "mkcomposefs", "--from-file", exact, img)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(img); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("image mode %v (%v), want 0640 under umask 027", fi.Mode(), err)
	}
	t.Run("unset", func(t *testing.T) {
		setStrict(t, false)
		got, err := build(t, loose)
		if err != nil {
			t.Fatalf("lenient parse refused: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("image differs from the strict form's")
		}
	})
	for _, v := range []string{"1", "0", ""} {
		t.Run("set="+v, func(t *testing.T) {
			t.Setenv(StrictEnv, v)
			if _, err := build(t, loose); err == nil {
				t.Fatalf("CFS_PARSE_STRICT=%q: accepted", v)
			}
		})
	}
}

// rebuild dumps img with composefs-info and builds an image from that
// dump, returning its path.
func rebuild(t *testing.T, args []string, img string) string {
	t.Helper()
	printed, err := run(t, "composefs-info", "dump", img)
	if err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(t.TempDir(), "again.dump")
	if err := os.WriteFile(again, []byte(printed), 0o644); err != nil {
		t.Fatal(err)
	}
	img2 := filepath.Join(t.TempDir(), "image2")
	if _, err := run(t, "mkcomposefs", append(args, "--from-file", again, img2)...); err != nil {
		t.Fatalf("rebuild from composefs-info dump: %v", err)
	}
	return img2
}

// primariesFirst reports whether, in the dumpfile at path, every node's
// first entry in depth-first name order is its primary one.
func primariesFirst(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := dumpfile.Parse(bytes.NewReader(data), dumpfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return testutil.PrimariesFirst(tr)
}

func TestMkcomposefsRejects(t *testing.T) {
	n := 0
	for _, c := range testutil.CorpusCases(t) {
		if !c.ShouldFail() {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "image")
			if _, err := run(t, "mkcomposefs", "--from-file", plainDump(t, c.Path), img); err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(img); !os.IsNotExist(err) {
				t.Fatalf("an image was left behind: %v", err)
			}
		})
	}
	if n == 0 {
		t.Fatal("no should-fail cases")
	}
}

// TestMkcomposefsDirectory builds an image from a directory with a digest
// store, mounts it over the store, and compares the mounted tree with the
// source.
func TestMkcomposefsDirectory(t *testing.T) {
	testutil.RequireRoot(t)
	work := t.TempDir()
	src, store, img := filepath.Join(work, "src"), filepath.Join(work, "objects"), filepath.Join(work, "img.cfs")
	files := map[string]string{"small": "tiny", "big/lib.so": strings.Repeat("library ", 1000), "big/copy.so": strings.Repeat("library ", 1000), "empty": ""}
	for p, c := range files {
		os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(src, p), []byte(c), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("big/lib.so", filepath.Join(src, "link"))
	os.Link(filepath.Join(src, "small"), filepath.Join(src, "small-hardlink"))
	out, err := run(t, "mkcomposefs", "--print-digest", "--digest-store="+store, src, img)
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("--print-digest printed %q", out)
	}
	objects, err := run(t, "composefs-info", "objects", img)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(objects)
	if len(lines) != 1 {
		t.Fatalf("objects %v: want one (two files share a content, small ones are inline)", lines)
	}
	if _, err := os.Stat(filepath.Join(store, lines[0])); err != nil {
		t.Fatalf("object not in the digest store: %v", err)
	}
	erofsMnt, merged := filepath.Join(work, "e"), filepath.Join(work, "m")
	os.Mkdir(erofsMnt, 0o755)
	os.Mkdir(merged, 0o755)
	testutil.MountErofs(t, img, erofsMnt)
	testutil.MountOverlay(t, testutil.Overlay{Lower: []string{erofsMnt}, DataLower: []string{store}}, merged)
	want, err := testutil.ListTree(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := testutil.ListTree(merged)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(want[1:], got[1:]) {
		t.Fatalf("mounted image differs from its source:\n--- source\n%s\n--- mounted\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}
