package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// processWithArg reports whether a container's /bin/hello runs with arg
// among its arguments.
func processWithArg(arg string) bool {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if args[0] == "/bin/hello" && slices.Contains(args, arg) {
			return true
		}
	}
	return false
}

// TestCLIRunLeftovers: a running container's run directory is locked by
// the run and by its runtime; rm and rmi -f refuse the container while
// it runs, even after `cfs-storage run` itself is killed (its runtime
// and process live on), and the directory is reaped once the process
// has exited, or removed by rm.
func TestCLIRunLeftovers(t *testing.T) {
	testutil.RequireRoot(t)
	layout := filepath.Join(t.TempDir(), "layout")
	testImage(t, layout)
	c := newCLI(t, "cfs")
	c.ok("pull", "-q", "oci:"+layout+":v1")
	runRoot := filepath.Join(c.runroot, "cfs-storage", "run")

	// 1. A run killed while its process runs, with each runtime: runc
	// outlives it (and keeps the directory locked), crun run through the
	// hybrid-cgroup helper dies with it and takes the process along.
	for i, rt := range []string{"runc", "crun"} {
		if _, err := exec.LookPath(rt); err != nil {
			t.Logf("%s: not installed", rt)
			continue
		}
		arg := fmt.Sprintf("sleep=%dms", 4000+i) // names the process in /proc
		run := c.start("run", "--runtime", rt, "--name", "sleeper", "localhost/layout:v1", arg)
		waitFor(t, time.Minute, "the run directory", func() bool { return len(dirEntries(t, runRoot)) == 1 })
		id := dirEntries(t, runRoot)[0]
		waitFor(t, time.Minute, "the container's process", func() bool { return processWithArg(arg) })
		if _, stderr, code := c.exec("rmi", "-f", "localhost/layout:v1"); code == 0 || !strings.Contains(stderr, "running") {
			t.Fatalf("%s: rmi -f of a running container's image: exit %d, %s", rt, code, stderr)
		}
		if _, stderr, code := c.exec("rm", "sleeper"); code == 0 || !strings.Contains(stderr, "running") {
			t.Fatalf("%s: rm of a running container: exit %d, %s", rt, code, stderr)
		}
		run.Process.Signal(syscall.SIGKILL)
		run.Wait()
		time.Sleep(200 * time.Millisecond)
		if processWithArg(arg) {
			t.Logf("%s: the container's process outlives the killed run", rt)
			if _, stderr, code := c.exec("rm", "sleeper"); code == 0 || !strings.Contains(stderr, "running") {
				t.Fatalf("%s: rm while the process of a killed run lives: exit %d, %s", rt, code, stderr)
			}
			if ents := dirEntries(t, runRoot); len(ents) != 1 {
				t.Fatalf("%s: the run directory of a live runtime was reaped: %v", rt, ents)
			}
		} else {
			t.Logf("%s: the container's process ended with the killed run", rt)
		}
		waitFor(t, time.Minute, "the process to exit and its run directory to be reaped", func() bool {
			c.ok("ps")
			return !processWithArg(arg) && len(dirEntries(t, runRoot)) == 0
		})
		if out := c.ok("rm", "sleeper"); !strings.Contains(out, id) {
			t.Fatalf("%s: rm printed %q, want %s", rt, out, id)
		}
	}

	// 2. rm removes a stale run directory with its container (the
	// directory of a killed run is normally reaped first; here it is
	// made stale by hand, as a run killed before reaping would leave).
	ctr := lastLine(c.ok("create", "localhost/layout:v1"))
	stale := filepath.Join(runRoot, ctr)
	if err := os.MkdirAll(filepath.Join(stale, "bundle"), 0o700); err != nil {
		t.Fatal(err)
	}
	c.ok("rm", ctr)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("rm left the container's run directory: %v", err)
	}

	// 3. A finished run leaves nothing, and rmi -f works again.
	c.ok("run", "--rm", "localhost/layout:v1")
	if ents := dirEntries(t, runRoot); len(ents) != 0 {
		t.Fatalf("run directories after a finished run: %v", ents)
	}
	c.ok("rmi", "-f", "localhost/layout:v1")
}
