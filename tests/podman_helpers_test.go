package tests

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/ocifix"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// podmanDrivers are the drivers every podman check runs on, in this
// order: overlay (c/storage's own, the reference) first, so that a cfs
// result can be compared with it.
var podmanDrivers = []string{"overlay", "cfs"}

// podmanBuild builds bin/podman once per test binary run with
// scripts/build-podman.sh (a no-op when bin/podman is up to date).
var podmanBuild struct {
	once     sync.Once
	path     string
	noSource string // why there is no podman source, if there is none
	err      error
}

// podmanBinary returns podman with the cfs driver linked in: $PODMAN_BIN
// if set, else bin/podman, built (or found up to date) by
// scripts/build-podman.sh from $PODMAN_SRC or ../shared/podman. Without
// a podman source the test skips (fails in CI); a failed build fails.
func podmanBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PODMAN_BIN"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("PODMAN_BIN=%s is not an executable: %v", p, err)
		}
		return p
	}
	podmanBuild.once.Do(func() {
		root := testutil.RepoRoot(t)
		cmd := exec.Command(filepath.Join(root, "scripts", "build-podman.sh"))
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			podmanBuild.path = filepath.Join(root, "bin", "podman")
		case errors.As(err, &exit) && exit.ExitCode() == 2:
			podmanBuild.noSource = strings.TrimSpace(string(out))
		default:
			podmanBuild.err = fmt.Errorf("scripts/build-podman.sh: %v\n%s", err, out)
		}
	})
	if podmanBuild.noSource != "" {
		prebuilt := filepath.Join(testutil.RepoRoot(t), "bin", "podman")
		if _, err := os.Stat(prebuilt); err == nil && !testutil.InCI() {
			t.Logf("no podman source (%s): using the existing %s, which may predate the driver's latest changes", podmanBuild.noSource, prebuilt)
			return prebuilt
		}
		testutil.Unavailable(t, "podman tests need a podman source to build bin/podman: %s", podmanBuild.noSource)
	}
	if podmanBuild.err != nil {
		t.Fatal(podmanBuild.err)
	}
	return podmanBuild.path
}

// podmanNS is a private mount namespace, kept alive by a sleeping
// process, that every podman command of the suite enters with nsenter.
// In it: the cgroup2 hierarchy at /sys/fs/cgroup (podman refuses the
// host's hybrid layout), and an overlay over /var/lib whose upper is a
// temporary directory, so that what root podman writes there
// (/var/lib/containers/cache) stays out of the host's. The mounts podman
// makes (container roots, image mounts) live and die with the
// namespace; the host's mount table never sees them.
type podmanNS struct {
	pid int
	// autoUserns: /etc/subuid and /etc/subgid exist, so the namespace
	// has the "containers" ranges that --userns=auto needs.
	autoUserns bool
}

// startPodmanNS starts the namespace; it ends with the test.
func startPodmanNS(t *testing.T) *podmanNS {
	t.Helper()
	dir := t.TempDir()
	upper, work := filepath.Join(dir, "varlib-upper"), filepath.Join(dir, "varlib-work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var cg unix.Statfs_t
	mountCgroup := "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
	if unix.Statfs("/sys/fs/cgroup", &cg) == nil && cg.Type == unix.CGROUP2_SUPER_MAGIC {
		mountCgroup = "true" // already a cgroup2 host
	}
	// podman's cgroupfs manager creates libpod_parent in the unified
	// hierarchy; it is removed at the end if the suite created it.
	unified := "/sys/fs/cgroup/unified/libpod_parent"
	if cg.Type == unix.CGROUP2_SUPER_MAGIC {
		unified = "/sys/fs/cgroup/libpod_parent"
	}
	_, statErr := os.Stat(unified)
	hadParent := statErr == nil
	// --userns=auto takes its IDs from the "containers" user's ranges in
	// /etc/subuid and /etc/subgid: the namespace sees files of its own.
	subids := filepath.Join(dir, "subids")
	if err := os.WriteFile(subids, []byte("containers:1000000:1000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -e
%s
mount -t overlay overlay -o lowerdir=/var/lib,upperdir=%s,workdir=%s /var/lib
for f in /etc/subuid /etc/subgid; do [ -f $f ] && mount --bind %s $f; done
echo ready
exec sleep infinity`, mountCgroup, upper, work, subids)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the podman mount namespace: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if !hadParent {
			// Empty cgroups only; a busy one (someone else's podman) stays.
			os.Remove(filepath.Join(unified, "conmon"))
			os.Remove(unified)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("set up the podman mount namespace: %v\n%s", err, stderr.String())
	}
	_, err1 := os.Stat("/etc/subuid")
	_, err2 := os.Stat("/etc/subgid")
	return &podmanNS{pid: cmd.Process.Pid, autoUserns: err1 == nil && err2 == nil}
}

// path is where the host sees path as it is inside the namespace
// (through /proc/PID/root, which follows the namespace's mounts).
func (ns *podmanNS) path(p string) string {
	return fmt.Sprintf("/proc/%d/root%s", ns.pid, p)
}

// mountinfo is the namespace's mount table.
func (ns *podmanNS) mountinfo(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", ns.pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// podmanStore is one podman configuration: its own graphroot, runroot,
// storage.conf, containers.conf and global flags.
type podmanStore struct {
	driver string
	bin    string
	ns     *podmanNS
	dir    string
	graph  string
	run    string
	env    []string
	global []string
}

// storeConfig says how newPodmanStore writes storage.conf: by default a
// minimal [storage] table; storageConf replaces it (a text/template-free
// format string with %[1]s driver, %[2]s graphroot, %[3]s runroot), and
// extra is appended.
type storeConfig struct {
	storageConf string
	extra       string
	global      []string
}

// newPodmanStore makes a store for driver under a new temporary
// directory.
func newPodmanStore(t *testing.T, bin string, ns *podmanNS, driver string, cfg storeConfig) *podmanStore {
	t.Helper()
	dir := t.TempDir()
	// Searchable by the IDs of a --uidmap container (t.TempDir is 0700).
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	s := &podmanStore{driver: driver, bin: bin, ns: ns, dir: dir,
		graph: filepath.Join(dir, "graph"), run: filepath.Join(dir, "run"), global: cfg.global}
	tmp := filepath.Join(dir, "tmp")
	for _, d := range []string{s.graph, s.run, tmp, filepath.Join(dir, "home"), filepath.Join(dir, "networks")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := cfg.storageConf
	if conf == "" {
		conf = "[storage]\ndriver = \"%[1]s\"\ngraphroot = \"%[2]s\"\nrunroot = \"%[3]s\"\n"
	}
	storageConf := fmt.Sprintf(conf, driver, s.graph, s.run) + cfg.extra
	// No cgroup controllers in the hybrid layout's unified hierarchy:
	// pids_limit = 0. No network: netns = "none". Never pull implicitly.
	containersConf := fmt.Sprintf(`[containers]
pids_limit = 0
netns = "none"
default_ulimits = %[3]s
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
pull_policy = "never"
events_logger = "file"
events_logfile_path = "%[1]s/events.log"
tmp_dir = "%[1]s/libpod"
image_copy_tmp_dir = "%[1]s"
[network]
network_config_dir = "%[2]s"
`, tmp, filepath.Join(dir, "networks"), buildUlimits())
	files := map[string]string{
		"storage.conf":    storageConf,
		"containers.conf": containersConf,
		"policy.json":     `{"default":[{"type":"insecureAcceptAnything"}]}`,
		"registries.conf": "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + tmp,
		"LANG=C",
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_POLICY_JSON=" + filepath.Join(dir, "policy.json"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
	}
	t.Cleanup(func() {
		// Containers first, so that the store's mounts go before the
		// temporary directory is removed (they would also go with the
		// namespace).
		s.exec(context.Background(), nil, "rm", "-af", "-t", "0")
		s.exec(context.Background(), nil, "image", "umount", "-af")
	})
	return s
}

// buildUlimits are the default ulimits for containers.conf: buildah
// raises a root build container's nofile and nproc to 1048576, which
// runc cannot set above this process's hard limits (EPERM).
func buildUlimits() string {
	var l []string
	for _, r := range []struct {
		name     string
		resource int
	}{{"nofile", unix.RLIMIT_NOFILE}, {"nproc", unix.RLIMIT_NPROC}} {
		var lim unix.Rlimit
		n := uint64(4096)
		if unix.Getrlimit(r.resource, &lim) == nil && lim.Max < n {
			n = lim.Max
		}
		l = append(l, fmt.Sprintf("%q", fmt.Sprintf("%s=%d:%d", r.name, n, n)))
	}
	return "[" + strings.Join(l, ", ") + "]"
}

// exec runs podman in the namespace; stdin may be nil.
func (s *podmanStore) exec(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	argv := append([]string{"-t", strconv.Itoa(s.ns.pid), "-m", "--", s.bin}, s.global...)
	cmd := exec.CommandContext(ctx, "nsenter", append(argv, args...)...)
	cmd.Env = s.env
	cmd.Dir = s.dir
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		code = -1
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else {
			errb.WriteString(err.Error())
		}
	}
	return out.String(), errb.String(), code
}

// try runs podman and returns its stdout, or an error carrying the
// command, exit code and stderr.
func (s *podmanStore) try(args ...string) (string, error) {
	stdout, stderr, code := s.exec(context.Background(), nil, args...)
	if code != 0 {
		return stdout, fmt.Errorf("podman %s (%s): exit %d\nstdout: %s\nstderr: %s",
			strings.Join(append(append([]string{}, s.global...), args...), " "), s.driver, code, strings.TrimSpace(stdout), strings.TrimSpace(stderr))
	}
	return stdout, nil
}

// ok runs podman and fails the test unless it exits 0.
func (s *podmanStore) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.try(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// podmanImages are the test images, written once per suite.
type podmanImages struct {
	layout  string // OCI layout with tags "base" and "data"
	archive string // oci-archive of the same layout
	base    ocifix.Image
	data    ocifix.Image
}

const (
	pmBase = "localhost/pmtest/base:v1"
	pmData = "localhost/pmtest/data:v1"
	// pmEpoch is the mtime of every entry of the test images' tars
	// (tarfix.Epoch), what stat must show for /etc.
	pmEpoch = 1700000000
)

// busyboxApplets are linked to /bin/busybox in the base image.
var busyboxApplets = []string{"sh", "ls", "cat", "stat", "echo", "true", "false", "id", "touch", "mkdir",
	"sleep", "grep", "rm", "wc", "find", "test", "head", "sha256sum", "date", "cut", "tr", "printf", "env",
	"chmod", "cp", "mv", "ln", "readlink"}

// writePodmanImages builds the base image from Debian's static busybox:
// layer 0 a small root (every directory with an entry, mtime
// pmEpoch, and the files podman bind-mounts over, so that a container
// changes nothing it did not write), layer 1 files under /bin and
// /usr/share/pm with no entry for those directories; and the data
// image, one layer with /payload/hello.txt.
func writePodmanImages(t *testing.T) *podmanImages {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testutil.Unavailable(t, "podman tests need a static /bin/busybox (Debian's busybox-static, `make deps`): %v", err)
	}
	entries := []tarfix.Entry{}
	for _, d := range []string{"bin/", "etc/", "root/", "dev/", "proc/", "sys/", "run/", "usr/", "usr/share/", "var/", "home/"} {
		entries = append(entries, tarfix.Dir(d))
	}
	tmpDir := tarfix.Dir("tmp/")
	tmpDir.Header.Mode = 0o1777
	entries = append(entries, tmpDir, tarfix.FileMode("bin/busybox", string(bb), 0o755, 0, 0))
	for _, a := range busyboxApplets {
		entries = append(entries, tarfix.Symlink("bin/"+a, "busybox"))
	}
	entries = append(entries,
		tarfix.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
		tarfix.File("etc/group", "root:x:0:\nnobody:x:65534:\n"),
		tarfix.File("etc/motd", "motd of the base image\n"),
		// podman adds /etc/mtab when it is missing.
		tarfix.Symlink("etc/mtab", "/proc/mounts"),
		tarfix.File("etc/hosts", ""), tarfix.File("etc/hostname", ""), tarfix.File("etc/resolv.conf", ""),
		tarfix.File("run/.containerenv", ""),
	)
	layer0, err := tarfix.Tar(entries...)
	if err != nil {
		t.Fatal(err)
	}
	layer1, err := tarfix.Tar(
		tarfix.FileMode("bin/extra-tool", "#!/bin/sh\necho extra\n", 0o755, 0, 0),
		tarfix.File("usr/share/pm/readme", "added without directory entries\n"),
	)
	if err != nil {
		t.Fatal(err)
	}
	data, err := tarfix.Tar(tarfix.Dir("payload/"), tarfix.File("payload/hello.txt", "hello from the data image\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	imgs := &podmanImages{layout: filepath.Join(dir, "layout"), archive: filepath.Join(dir, "layout.tar")}
	cfg := imgspecv1.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}}
	if imgs.base, err = ocifix.Write(imgs.layout, "base", cfg, []ocifix.Layer{{Tar: layer0, Gzip: true}, {Tar: layer1}}); err != nil {
		t.Fatal(err)
	}
	if imgs.data, err = ocifix.Write(imgs.layout, "data", cfg, []ocifix.Layer{{Tar: data, Gzip: true}}); err != nil {
		t.Fatal(err)
	}
	if err := pmTarDir(imgs.layout, imgs.archive); err != nil {
		t.Fatal(err)
	}
	return imgs
}

// tarDir writes the files under dir to a tar at out (an oci-archive when
// dir is an OCI layout).
func pmTarDir(dir, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// pullTestImages pulls the base image from the oci: layout and the data
// image from the oci-archive, and tags them pmBase and pmData.
func pullTestImages(s *podmanStore, imgs *podmanImages) error {
	for _, p := range []struct{ src, tag string }{
		{"oci:" + imgs.layout + ":base", pmBase},
		{"oci-archive:" + imgs.archive + ":data", pmData},
	} {
		out, err := s.try("pull", "-q", p.src)
		if err != nil {
			return err
		}
		if _, err := s.try("tag", lastLine(out), p.tag); err != nil {
			return err
		}
	}
	return nil
}

// layerTars reads the layers of the image archive at path, in a docker-archive
// (manifest.json) or OCI layout (index.json) form, uncompressed.
func pmArchiveLayers(path string) ([][]byte, error) {
	files := map[string][]byte{}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[strings.TrimPrefix(h.Name, "./")] = data
	}
	var man []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil || len(man) != 1 {
		return nil, fmt.Errorf("%s: manifest.json: %v (%d images)", path, err, len(man))
	}
	var layers [][]byte
	for _, l := range man[0].Layers {
		data, ok := files[l]
		if !ok {
			return nil, fmt.Errorf("%s: no layer %s", path, l)
		}
		if data, err = pmMaybeGunzip(data); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, l, err)
		}
		layers = append(layers, data)
	}
	return layers, nil
}

func pmMaybeGunzip(data []byte) ([]byte, error) {
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func pmSha256Digest(data []byte) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data))
}

// tarListing describes a layer tar's entries, one line each: name,
// type, mode, owner, size, link target, content digest, xattrs, and the
// mtime when withTimes.
func pmTarListing(data []byte, withTimes bool) ([]string, error) {
	var lines []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return lines, err
		}
		line := fmt.Sprintf("%s type=%c mode=%o owner=%d:%d size=%d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size)
		if h.Linkname != "" {
			line += " -> " + h.Linkname
		}
		if h.Typeflag == tar.TypeReg {
			line += fmt.Sprintf(" sha256=%x", sha256.Sum256(body))
		}
		var xattrs []string
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				xattrs = append(xattrs, fmt.Sprintf("%s=%q", strings.TrimPrefix(k, "SCHILY.xattr."), v))
			}
		}
		if len(xattrs) > 0 {
			line += " xattrs=" + strings.Join(xattrs, ",")
		}
		if withTimes {
			line += fmt.Sprintf(" mtime=%d", h.ModTime.Unix())
		}
		lines = append(lines, line)
	}
}

// diffLines returns the lines only in a ("-") and only in b ("+").
func pmDiffLines(a, b []string) string {
	inA, inB := map[string]bool{}, map[string]bool{}
	for _, l := range a {
		inA[l] = true
	}
	for _, l := range b {
		inB[l] = true
	}
	var out []string
	for _, l := range a {
		if !inB[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range b {
		if !inA[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// pmStoreState lists every file under root with its size and modification
// time, skipping lock files (c/storage takes read locks on a read-only
// store's, which may touch them): equal states mean no content changed.
func pmStoreState(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".lock") {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %d %s", strings.TrimPrefix(p, root), info.Size(), info.ModTime().Format(time.RFC3339Nano)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
