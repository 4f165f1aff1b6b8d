package tests

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cfs-storage/cfs-storage/tests/ocifix"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// builtBinaries builds cfs-storage and the static test program once per
// test binary run; the results live in a directory removed by cleanup.
type builtBinaries struct {
	once       sync.Once
	dir        string
	cli, hello string
	err        error
}

var binaries builtBinaries // built on first use, read-only after

// helloSource is the static program the test images run as /bin/hello:
// it prints its arguments, working directory, IDs and $GREETING, a line
// on stderr, prints files named by cat=PATH, sleeps for sleep=DURATION,
// and exits with exit=N.
const helloSource = `package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	wd, _ := os.Getwd()
	fmt.Printf("args=%s cwd=%s uid=%d gid=%d greeting=%s\n", strings.Join(os.Args[1:], ","), wd, os.Getuid(), os.Getgid(), os.Getenv("GREETING"))
	fmt.Fprintln(os.Stderr, "hello on stderr")
	for _, a := range os.Args[1:] {
		if p, ok := strings.CutPrefix(a, "cat="); ok {
			b, err := os.ReadFile(p)
			if err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			os.Stdout.Write(b)
		}
		if v, ok := strings.CutPrefix(a, "sleep="); ok {
			d, _ := time.ParseDuration(v)
			time.Sleep(d)
		}
		if v, ok := strings.CutPrefix(a, "exit="); ok {
			n, _ := strconv.Atoi(v)
			os.Exit(n)
		}
	}
}
`

// binDirPrefix names the directories of built binaries; the owning
// test process's PID follows, so that a later run can remove the
// directories of processes that are gone (there is no hook at the end
// of the package's tests to remove its own).
const binDirPrefix = "cfs-cli-test-"

// removeStaleBinDirs removes binary directories of dead test processes.
func removeStaleBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, d := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), binDirPrefix), "-")
		if _, err := os.Stat(filepath.Join("/proc", pid)); errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(d)
		}
	}
}

func (b *builtBinaries) build() {
	removeStaleBinDirs()
	b.dir, b.err = os.MkdirTemp("", fmt.Sprintf("%s%d-", binDirPrefix, os.Getpid()))
	if b.err != nil {
		return
	}
	b.cli = filepath.Join(b.dir, "cfs-storage")
	out, err := exec.Command("go", "build", "-tags", "containers_image_openpgp,exclude_graphdriver_btrfs", "-o", b.cli,
		"github.com/cfs-storage/cfs-storage/cmd/cfs-storage").CombinedOutput()
	if err != nil {
		b.err = errors.New("build cfs-storage: " + err.Error() + ": " + string(out))
		return
	}
	src := filepath.Join(b.dir, "hello")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.err = err
		return
	}
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(helloSource), 0o644)
	b.hello = filepath.Join(b.dir, "hello-bin")
	cmd := exec.Command("go", "build", "-o", b.hello, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.err = errors.New("build hello: " + err.Error() + ": " + string(out))
	}
}

// buildBinaries returns the paths of cfs-storage and the static hello.
func buildBinaries(t *testing.T) (cli, hello string) {
	t.Helper()
	binaries.once.Do(binaries.build)
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.cli, binaries.hello
}

// cli runs cfs-storage on one store.
type cli struct {
	t                   *testing.T
	bin                 string
	root, runroot, conf string
	driver              string
}

func newCLI(t *testing.T, driver string) *cli {
	bin, _ := buildBinaries(t)
	dir := t.TempDir()
	c := &cli{t: t, bin: bin, root: filepath.Join(dir, "root"), runroot: filepath.Join(dir, "run"), driver: driver}
	// storage.conf names the driver, as a user would configure it.
	c.conf = filepath.Join(dir, "storage.conf")
	conf := "[storage]\ndriver = \"" + driver + "\"\ngraphroot = \"" + c.root + "\"\nrunroot = \"" + c.runroot + "\"\n"
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Leave nothing mounted: remove containers, then reset the store.
		out, _, _ := c.exec("ps", "-q")
		for _, id := range strings.Fields(out) {
			c.exec("rm", id)
		}
		c.exec("rmi", "-f", "--all")
	})
	return c
}

// exec runs cfs-storage ARGS and returns stdout, stderr and exit code.
func (c *cli) exec(args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+c.conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		c.t.Fatalf("cfs-storage %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// ok runs cfs-storage ARGS, fails the test unless it exits 0, and
// returns stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	stdout, stderr, code := c.exec(args...)
	if code != 0 {
		c.t.Fatalf("%s: cfs-storage %s: exit %d\nstdout:\n%s\nstderr:\n%s", c.driver, strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// imageTree lists the tree a container of image shows (testutil.ListTree,
// without its root line), from a container made and removed for it.
func (c *cli) imageTree(image string) []string {
	c.t.Helper()
	ctr := lastLine(c.ok("create", image))
	defer c.ok("rm", ctr)
	view, err := testutil.ListTree(lastLine(c.ok("mount", ctr)))
	if err != nil {
		c.t.Fatal(err)
	}
	return view[1:]
}

// lastLine is the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// testImage writes the test image to an OCI layout under tag "v1": a
// gzip layer with /bin/hello and /etc/passwd, then the three layers of
// layerTars (whiteouts, opaque dirs, hard links, xattrs, setuid, devices)
// alternately uncompressed and gzip.
func testImage(t *testing.T, dir string) ocifix.Image {
	t.Helper()
	_, hello := buildBinaries(t)
	helloBytes, err := os.ReadFile(hello)
	if err != nil {
		t.Fatal(err)
	}
	base, err := tarfix.Tar(
		tarfix.Dir("bin/"), tarfix.FileMode("bin/hello", string(helloBytes), 0o755, 0, 0),
		// layerTars' usr/bin/su loses its setuid bit to its hard link's
		// 0644 header (c/storage applies a link's mode to the inode, on
		// every driver); this one keeps it.
		tarfix.FileMode("bin/suid", "setuid program", 0o4755, 0, 0),
		tarfix.Dir("home/"), tarfix.Dir("home/app/"),
		tarfix.Dir("etc/"), tarfix.File("etc/group", "root:x:0:\napp:x:1000:\n"),
	)
	if err != nil {
		t.Fatal(err)
	}
	layers := []ocifix.Layer{{Tar: base, Gzip: true}}
	for i, tb := range layerTars(t) {
		layers = append(layers, ocifix.Layer{Tar: tb, Gzip: i%2 == 1})
	}
	// The last layer adds the user the image runs as.
	users, err := tarfix.Tar(tarfix.Dir("etc/"), tarfix.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"))
	if err != nil {
		t.Fatal(err)
	}
	layers = append(layers, ocifix.Layer{Tar: users})
	img, err := ocifix.Write(dir, "v1", imgspecv1.ImageConfig{
		Entrypoint: []string{"/bin/hello"},
		Cmd:        []string{"default-cmd"},
		Env:        []string{"GREETING=hi from the image"},
		WorkingDir: "/home/app",
		User:       "app",
	}, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
