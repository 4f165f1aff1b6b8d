package hostlink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv names the variables through which TestIndexProcesses starts
// copies of the test binary as separate processes sharing one cache.
const (
	helperRepoEnv  = "HOSTLINK_TEST_HELPER_REPO"
	helperCacheEnv = "HOSTLINK_TEST_HELPER_CACHE"
)

// TestIndexProcesses runs lookups from four processes at once over one
// cache directory: together they hash every object exactly once.
func TestIndexProcesses(t *testing.T) {
	r, _ := fakeRepo(t, sampleObjects)
	cacheDir := t.TempDir()
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 4; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIndexHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperRepoEnv+"="+r.path, helperCacheEnv+"="+cacheDir)
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	total := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
		_, after, ok := strings.Cut(outs[i].String(), "hashed=")
		n, err := strconv.Atoi(strings.Fields(after + " x")[0])
		if !ok || err != nil {
			t.Fatalf("helper %d output %q", i, outs[i])
		}
		total += n
	}
	if total != len(sampleObjects) {
		t.Errorf("4 processes hashed %d objects in all, want %d", total, len(sampleObjects))
	}
}

// TestIndexHelperProcess is one process of TestIndexProcesses; it does
// nothing when run normally.
func TestIndexHelperProcess(t *testing.T) {
	repo, cacheDir := os.Getenv(helperRepoEnv), os.Getenv(helperCacheEnv)
	if repo == "" {
		t.Skip("helper process of TestIndexProcesses")
	}
	r, err := OpenRepo(repo)
	if err != nil {
		t.Fatal(err)
	}
	// A slow hash makes the processes' lookups overlap.
	h := &countingHash{delay: 30 * time.Millisecond}
	ix := newTestIndex(t, r, cacheDir, h)
	for _, content := range sampleObjects {
		if _, _, err := ix.lookupDigest(context.Background(), int64(len(content)), sha256.Sum256([]byte(content+"absent"))); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("hashed=%d\n", h.n.Load())
}
