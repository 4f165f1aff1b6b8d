package tests

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// startRegistry runs the distribution registry (Debian's docker-registry
// package) on a free loopback port with a temporary config and storage,
// and returns its host:port. It stops with the test.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin := testutil.RequireTool(t, "docker-registry")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.yml")
	yml := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", conf)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("registry on %s did not come up: %v\n%s", addr, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCLIRegistryPushPull pushes an image from a cfs store to a real
// registry on loopback over docker:// and pulls it into a second cfs
// store: same image ID, same container tree, and it runs.
func TestCLIRegistryPushPull(t *testing.T) {
	testutil.RequireRoot(t)
	addr := startRegistry(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	first := newCLI(t, "cfs")
	id := lastLine(first.ok("pull", "-q", "oci:"+layout+":v1"))
	ref := "docker://" + addr + "/cfs/test:v1"
	if _, stderr, code := first.exec("push", "localhost/layout:v1", ref); code == 0 || !strings.Contains(stderr, "add --tls-verify=false") {
		t.Errorf("push over plain HTTP without --tls-verify=false: exit %d, want a clear error\n%s", code, stderr)
	}
	first.ok("push", "--tls-verify=false", "localhost/layout:v1", ref)

	second := newCLI(t, "cfs")
	got := lastLine(second.ok("pull", "--tls-verify=false", ref))
	if got != id {
		t.Errorf("pulled from the registry: image ID %s, want %s (the pushed config changed)", got, id)
	}
	if out := second.ok("images"); !strings.Contains(out, addr+"/cfs/test") {
		t.Errorf("images does not list %s/cfs/test:\n%s", addr, out)
	}
	trees := map[string][]string{"oci": first.imageTree(id[:12]), "registry": second.imageTree(id[:12])}
	if !slices.Equal(trees["oci"], trees["registry"]) {
		t.Errorf("tree pulled from the registry differs from the one pulled from oci:\n--- oci\n%s\n--- registry\n%s",
			strings.Join(trees["oci"], "\n"), strings.Join(trees["registry"], "\n"))
	}
	stdout, stderr, code := second.exec("run", "--rm", id[:12], "exit=3")
	if code != 3 || !strings.Contains(stdout, "args=exit=3") {
		t.Errorf("run the registry-pulled image: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	// Push the registry-pulled image on under a new tag, and pull it back.
	second.ok("push", "--tls-verify=false", id[:12], "docker://"+addr+"/cfs/test:again")
	if again := lastLine(first.ok("pull", "--tls-verify=false", "docker://"+addr+"/cfs/test:again")); again != id {
		t.Errorf("round trip through two stores and the registry: ID %s, want %s", again, id)
	}
}
