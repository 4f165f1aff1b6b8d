package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/driver"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// concurrencyChildEnv selects a worker role for the test binary:
// "ROLE|GRAPHROOT|RUNROOT|SEED".
const concurrencyChildEnv = "CFS_CONCURRENCY_CHILD"

// sharedLayer is layer n of worker w: contents shared by every worker's
// images (the "base"), and contents of its own.
func sharedLayer(w, n int) []byte {
	entries := []tarfix.Entry{
		tarfix.Dir("usr/"), tarfix.File("usr/base", strings.Repeat("base content shared by all ", 400)),
		tarfix.File(fmt.Sprintf("usr/layer-%d", n), strings.Repeat(fmt.Sprintf("layer %d ", n), 300)),
		tarfix.File(fmt.Sprintf("own-%d-%d", w, n), strings.Repeat(fmt.Sprintf("worker %d layer %d ", w, n), 200)),
	}
	b, err := tarfix.Tar(entries...)
	if err != nil {
		panic(err)
	}
	return b
}

// runConcurrencyChild is a worker process: "pull" images (layer chains)
// into the shared store, run containers of them (mount, check every
// file, unmount, remove) and remove some images again; or "gc" the
// object store in a loop. It exits 0 only if every check held.
func runConcurrencyChild(spec string) {
	var role, root, run string
	var seed int
	parts := strings.Split(spec, "|")
	role, root, run = parts[0], parts[1], parts[2]
	fmt.Sscanf(parts[3], "%d", &seed)
	store, err := storage.GetStore(types.StoreOptions{GraphRoot: root, RunRoot: run, GraphDriverName: "cfs"})
	if err != nil {
		fmt.Println("open store:", err)
		os.Exit(2)
	}
	// Not Shutdown(true): forcing unmounts every layer c/storage records
	// as mounted in the store, the containers other workers are reading
	// at that moment included.
	defer store.Shutdown(false)
	deadline := time.Now().Add(6 * time.Second)
	if role == "gc" {
		gd, _ := store.GraphDriver()
		ext, _ := driver.AsExtension(gd)
		for time.Now().Before(deadline) {
			if _, err := ext.Objects().GC(context.Background()); err != nil {
				fmt.Println("gc:", err)
				os.Exit(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return
	}
	for round := 0; time.Now().Before(deadline); round++ {
		if err := workerRound(store, seed, round); err != nil {
			fmt.Printf("worker %d round %d: %v\n", seed, round, err)
			os.Exit(1)
		}
	}
}

func workerRound(store storage.Store, w, round int) error {
	parent := ""
	for n := 0; n < 3; n++ {
		layer, _, err := store.PutLayer("", parent, nil, "", false, nil, bytes.NewReader(sharedLayer(w, n)))
		if err != nil {
			return fmt.Errorf("put layer %d: %w", n, err)
		}
		parent = layer.ID
	}
	img, err := store.CreateImage("", []string{fmt.Sprintf("w%d-r%d", w, round)}, parent, "", nil)
	if err != nil {
		return err
	}
	ctr, err := store.CreateContainer("", nil, img.ID, "", "", nil)
	if err != nil {
		return err
	}
	mnt, err := store.Mount(ctr.ID, "")
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	for n := 0; n < 3; n++ {
		want := strings.Repeat(fmt.Sprintf("worker %d layer %d ", w, n), 200)
		got, err := os.ReadFile(filepath.Join(mnt, fmt.Sprintf("own-%d-%d", w, n)))
		if err != nil || string(got) != want {
			return fmt.Errorf("own-%d-%d reads wrong: %v", w, n, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "usr/base")); err != nil || !strings.HasPrefix(string(got), "base content") {
		return fmt.Errorf("usr/base reads wrong: %v", err)
	}
	if _, err := store.Unmount(ctr.ID, true); err != nil {
		return err
	}
	if err := store.DeleteContainer(ctr.ID); err != nil {
		return err
	}
	if round%2 == 1 {
		if _, err := store.DeleteImage(img.ID, true); err != nil {
			return fmt.Errorf("delete image: %w", err)
		}
	}
	return nil
}

// TestConcurrentProcesses runs three worker processes pulling
// overlapping images, running and removing containers and images, and a
// fourth collecting garbage, all on one store at once; afterwards the
// object store and every image check clean and every remaining image
// reads its exact contents.
func TestConcurrentProcesses(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	roles := []string{"worker|0", "worker|1", "worker|2", "gc|9"}
	cmds := make([]*exec.Cmd, len(roles))
	outs := make([]*bytes.Buffer, len(roles))
	for i, r := range roles {
		role, seed, _ := strings.Cut(r, "|")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%s|%s", concurrencyChildEnv, role, root, run, seed))
		outs[i] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v\n%s", roles[i], err, outs[i])
		}
	}
	store := openStoreAt(t, root, run)
	images, err := store.Images()
	if err != nil {
		t.Fatal(err)
	}
	if len(images) == 0 {
		t.Fatal("no image survived: the workers did nothing")
	}
	gd, _ := store.GraphDriver()
	ext, _ := driver.AsExtension(gd)
	if rep, err := ext.Objects().Fsck(context.Background(), dedupFsckOptions()); err != nil || !rep.Clean() {
		t.Fatalf("object fsck after concurrent work: %v %+v", err, rep)
	}
	if problems, err := ext.CheckImages(context.Background(), driver.CheckOnly); err != nil || len(problems) > 0 {
		t.Fatalf("image check after concurrent work: %v %+v", err, problems)
	}
	for _, img := range images {
		var w, round int
		fmt.Sscanf(img.Names[0], "w%d-r%d", &w, &round)
		_, mnt, unmount := mountNewContainer(t, store, img.TopLayer)
		for n := 0; n < 3; n++ {
			got, err := os.ReadFile(filepath.Join(mnt, fmt.Sprintf("own-%d-%d", w, n)))
			if err != nil || string(got) != strings.Repeat(fmt.Sprintf("worker %d layer %d ", w, n), 200) {
				t.Fatalf("image %s: own-%d-%d reads wrong after the run: %v", img.Names[0], w, n, err)
			}
		}
		unmount()
	}
	t.Logf("%d images left by 3 workers and a collector", len(images))
}

func openStoreAt(t *testing.T, root, run string) storage.Store {
	t.Helper()
	store, err := storage.GetStore(types.StoreOptions{GraphRoot: root, RunRoot: run, GraphDriverName: "cfs"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Shutdown(true) })
	return store
}

func dedupFsckOptions() dedup.FsckOptions { return dedup.FsckOptions{} }
