package driver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// The crash test runs a child process (this test binary, selected by
// crashChildEnv) that applies layers, builds flattened images and
// removes layers in a loop, printing "done <op> <id>" after each step
// completes. The parent kills it with SIGKILL at a random moment,
// reopens the store and checks it: every layer reported applied is
// present and mountable with the right content, a layer reported removed
// is gone, fsck is clean, and after GC everything still reads.
const crashChildEnv = "CFS_DRIVER_CRASH_CHILD"

// crashLayer is the deterministic content of layer n: some contents
// shared between layers, some unique, one large file streamed.
func crashLayer(n int) []tarfix.Entry {
	return []tarfix.Entry{
		tarfix.Dir("shared/"), tarfix.File("shared/common", strings.Repeat("common ", 300)),
		tarfix.File(fmt.Sprintf("layer-%d", n), strings.Repeat(fmt.Sprintf("unique to %d ", n), 200)),
		tarfix.File("big", strings.Repeat(fmt.Sprintf("%08d", n), 400<<10/8)),
	}
}

func crashLayerID(n int) string { return fmt.Sprintf("c%04d", n) }

// runCrashChild is the child's loop; it never returns normally.
func runCrashChild(home, run string, start int) {
	c, err := newCore(home, run, defaultOptions())
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	for n := start; ; n++ {
		id := crashLayerID(n)
		parent := ""
		if n%3 != 0 && c.exists(crashLayerID(n-1)) {
			parent = crashLayerID(n - 1)
		}
		tarball, _ := tarfix.Tar(crashLayer(n)...)
		if err := c.create(ctx, id, parent, false); err != nil {
			fmt.Println("create:", err)
			os.Exit(2)
		}
		if _, err := c.applyDiff(ctx, id, bytes.NewReader(tarball), nil); err != nil {
			fmt.Println("apply:", err)
			os.Exit(2)
		}
		fmt.Printf("done apply %s %s\n", id, parent)
		if err := c.ensureFlat(ctx, id); err != nil {
			fmt.Println("flatten:", err)
			os.Exit(2)
		}
		if n%4 == 1 && parent != "" {
			fmt.Printf("removing %s\n", parent)
			if err := removeLayer(c, parent); err == nil {
				fmt.Printf("done remove %s\n", parent)
			}
		}
		if n%5 == 0 {
			if _, err := c.objects.GC(ctx); err != nil {
				fmt.Println("gc:", err)
				os.Exit(2)
			}
		}
	}
}

func TestCrashConsistency(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	home, run := filepath.Join(dir, "home"), filepath.Join(dir, "run")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	applied, removed, removing := map[string]bool{}, map[string]bool{}, map[string]bool{}
	deadline := time.Now().Add(8 * time.Second)
	next, kills := 0, 0
	for time.Now().Before(deadline) || kills < 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d", crashChildEnv, home, run, next))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(time.Duration(30+rng.Intn(1200))*time.Millisecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) >= 3 && f[0] == "done" && f[1] == "apply":
				applied[f[2]] = true
				fmt.Sscanf(f[2], "c%d", &next)
				next++
			case len(f) == 3 && f[0] == "done" && f[1] == "remove":
				removed[f[2]] = true
			case len(f) == 2 && f[0] == "removing":
				// Killed before "done remove", the layer may be there
				// or gone: removal is atomic, both are consistent.
				removing[f[1]] = true
			default:
				t.Fatalf("child: %s", sc.Text())
			}
		}
		timer.Stop()
		cmd.Wait()
		kills++
		for id := range removing {
			if !layerExists(home, id) {
				removed[id] = true
			}
			delete(removing, id)
		}
		checkAfterCrash(t, home, run, applied, removed)
		next++ // the interrupted layer may exist half-made: start past it
	}
	t.Logf("%d kills, %d layers applied, %d removed", kills, len(applied), len(removed))
	if len(applied) == 0 {
		t.Fatal("no layer was ever applied: the test exercised nothing")
	}
}

func checkAfterCrash(t *testing.T, home, run string, applied, removed map[string]bool) {
	t.Helper()
	ctx := context.Background()
	c, err := newCore(home, run, defaultOptions())
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer c.close()
	// Half-made layers (created, never reported applied) go, as c/storage
	// removes incomplete layers at start-up.
	ids, err := c.listLayers()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !applied[id] || removed[id] {
			if err := removeLayer(c, id); err != nil {
				t.Fatalf("remove leftover %s: %v", id, err)
			}
		}
	}
	if _, err := c.objects.GC(ctx); err != nil {
		t.Fatalf("gc after crash: %v", err)
	}
	checkNoLeakedObjects(t, c)
	rep, err := c.objects.Fsck(ctx, dedupFsckAll())
	if err != nil || !rep.Clean() {
		t.Fatalf("fsck after crash: %v %+v", err, rep)
	}
	if problems, err := c.CheckImages(ctx, false); err != nil || len(problems) > 0 {
		t.Fatalf("image check after crash: %v %+v", err, problems)
	}
	for _, id := range ids {
		if names, _ := readDirNames(c.layerDir(id)); slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, ".tmp-") }) {
			t.Fatalf("layer %s keeps temporary files after recovery: %v", id, names)
		}
	}
	for id := range applied {
		if removed[id] {
			if c.exists(id) {
				t.Fatalf("layer %s reported removed is back", id)
			}
			continue
		}
		checkLayerContent(t, c, id)
	}
}

func checkLayerContent(t *testing.T, c *core, id string) {
	t.Helper()
	var n int
	fmt.Sscanf(id, "c%d", &n)
	mnt, err := c.get(context.Background(), id, mountOptions{})
	if err != nil {
		t.Fatalf("layer %s reported applied does not mount: %v", id, err)
	}
	defer c.put(id)
	for _, e := range crashLayer(n) {
		if e.Header.Typeflag != '0' {
			continue
		}
		got, err := os.ReadFile(filepath.Join(mnt, e.Header.Name))
		if err != nil || !bytes.Equal(got, e.Body) {
			t.Fatalf("layer %s: %s reads wrong after crash (%v, %d bytes)", id, e.Header.Name, err, len(got))
		}
	}
}

func dedupFsckAll() dedup.FsckOptions { return dedup.FsckOptions{} }

func layerExists(home, id string) bool {
	_, err := os.Stat(filepath.Join(home, "layers", id, layerMetaFile))
	return err == nil
}

// checkNoLeakedObjects checks that after GC the store holds exactly the
// objects its layers reference: nothing an interrupted operation left.
func checkNoLeakedObjects(t *testing.T, c *core) {
	t.Helper()
	ids, err := c.listLayers()
	if err != nil {
		t.Fatal(err)
	}
	used := map[dedup.Digest]bool{}
	for _, id := range ids {
		refs, err := c.objects.Refs(id)
		if err != nil && !errors.Is(err, dedup.ErrNotFound) {
			t.Fatal(err)
		}
		for _, d := range refs {
			used[d] = true
		}
	}
	st, err := c.objects.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects != int64(len(used)) {
		t.Fatalf("after GC the store has %d objects, its %d layers use %d: leaked objects survived", st.Objects, len(ids), len(used))
	}
}
