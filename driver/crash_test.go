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

// crashCommit writes into a new writable layer on id through its mount
// and seals it (as creating a child on it, or committing it, does).
func crashCommit(ctx context.Context, c *core, n int, id string) error {
	w := fmt.Sprintf("w%04d", n)
	if err := c.create(ctx, w, id, imageLayer); err != nil {
		return err
	}
	mnt, err := c.get(ctx, w, mountOptions{})
	if err != nil {
		return err
	}
	werr := os.WriteFile(filepath.Join(mnt, "written"), []byte(crashWritten(n)), 0o644)
	if err := c.put(w); err != nil || werr != nil {
		return errors.Join(err, werr)
	}
	if err := c.seal(ctx, w); err != nil {
		return err
	}
	fmt.Printf("done seal %s %s\n", w, id)
	return nil
}

func crashWritten(n int) string { return strings.Repeat(fmt.Sprintf("written in w%d ", n), 300) }

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
		if n%3 != 0 && c.layers.exists(crashLayerID(n-1)) {
			parent = crashLayerID(n - 1)
		}
		tarball, _ := tarfix.Tar(crashLayer(n)...)
		if err := c.create(ctx, id, parent, imageLayer); err != nil {
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
		if n%6 == 2 {
			if err := crashCommit(ctx, c, n, id); err != nil {
				fmt.Println("commit:", err)
				os.Exit(2)
			}
		}
		if n%4 == 1 && parent != "" {
			// A committed child of the parent goes first, as c/storage
			// removes children before parents.
			for _, victim := range []string{"w" + parent[1:], parent} {
				if !c.layers.exists(victim) {
					continue
				}
				fmt.Printf("removing %s\n", victim)
				if err := removeLayer(c, victim); err == nil {
					fmt.Printf("done remove %s\n", victim)
				}
			}
		}
		if n%5 == 0 {
			if _, err := c.contents.objects.GC(ctx); err != nil {
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
	// applied holds image layers ("c…") and committed writable layers
	// ("w…"); fresh those of the current round, checked after every kill.
	// Every 8th kill and at the end the check is full: every layer's
	// content, GC, no leaked object, fsck, image digests.
	applied, removed, removing := map[string]bool{}, map[string]bool{}, map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	next, kills := 0, 0
	for time.Now().Before(deadline) || kills < 5 {
		fresh := map[string]bool{}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d", crashChildEnv, home, run, next))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(time.Duration(5+rng.Intn(200))*time.Millisecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) >= 3 && f[0] == "done" && f[1] == "apply":
				applied[f[2]], fresh[f[2]] = true, true
				fmt.Sscanf(f[2], "c%d", &next)
				next++
			case len(f) == 4 && f[0] == "done" && f[1] == "seal":
				applied[f[2]], fresh[f[2]] = true, true
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
		if kills%8 == 0 || !time.Now().Before(deadline) {
			fresh = nil // check every layer
		}
		checkAfterCrash(t, home, run, applied, removed, fresh)
		next++ // the interrupted layer may exist half-made: start past it
	}
	t.Logf("%d kills, %d layers applied or committed, %d removed", kills, len(applied), len(removed))
	if len(applied) == 0 {
		t.Fatal("no layer was ever applied: the test exercised nothing")
	}
}

func checkAfterCrash(t *testing.T, home, run string, applied, removed, fresh map[string]bool) {
	t.Helper()
	ctx := context.Background()
	c, err := newCore(home, run, defaultOptions())
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer c.close()
	// Half-made layers (created, never reported applied) go, as c/storage
	// removes incomplete layers at start-up.
	ids, err := c.layers.list()
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
	if fresh == nil { // the full check
		if _, err := c.contents.objects.GC(ctx); err != nil {
			t.Fatalf("gc after crash: %v", err)
		}
		checkNoLeakedObjects(t, c)
		rep, err := c.contents.objects.Fsck(ctx, dedupFsckAll())
		if err != nil || !rep.Clean() {
			t.Fatalf("fsck after crash: %v %+v", err, rep)
		}
		if problems, err := c.checkImages(ctx, CheckOnly); err != nil || len(problems) > 0 {
			t.Fatalf("image check after crash: %v %+v", err, problems)
		}
	}
	for _, id := range ids {
		if names, _ := readDirNames(c.layers.path(id)); slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, ".tmp-") }) {
			t.Fatalf("layer %s keeps temporary files after recovery: %v", id, names)
		}
	}
	for id := range applied {
		if removed[id] {
			if c.layers.exists(id) {
				t.Fatalf("layer %s reported removed is back", id)
			}
			continue
		}
		if fresh == nil || fresh[id] {
			checkLayerContent(t, c, id)
		}
	}
}

func checkLayerContent(t *testing.T, c *core, id string) {
	t.Helper()
	var n int
	fmt.Sscanf(id[1:], "%d", &n)
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
	if id[0] == 'w' {
		got, err := os.ReadFile(filepath.Join(mnt, "written"))
		if err != nil || string(got) != crashWritten(n) {
			t.Fatalf("committed layer %s: the file written into it reads wrong after crash (%v, %d bytes)", id, err, len(got))
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
	ids, err := c.layers.list()
	if err != nil {
		t.Fatal(err)
	}
	used := map[dedup.Digest]bool{}
	for _, id := range ids {
		refs, err := c.contents.objects.Refs(id)
		if err != nil && !errors.Is(err, dedup.ErrNotFound) {
			t.Fatal(err)
		}
		for _, d := range refs {
			used[d] = true
		}
	}
	st, err := c.contents.objects.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects != int64(len(used)) {
		t.Fatalf("after GC the store has %d objects, its %d layers use %d: leaked objects survived", st.Objects, len(ids), len(used))
	}
}
