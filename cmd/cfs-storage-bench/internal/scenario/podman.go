package scenario

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// podmanLabels are the drivers the podman scenario runs podman on.
var podmanLabels = []string{"cfs", "overlay"}

// findPodman returns podman with the cfs driver linked in: $CFS_BENCH_PODMAN,
// else bin/podman next to this program (`make podman`), else "".
func findPodman() string {
	if p := os.Getenv("CFS_BENCH_PODMAN"); p != "" {
		return p
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "podman")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// podmanNamespace is a private mount namespace, held by a sleeping
// process, that podman runs in (nsenter): cgroup2 at /sys/fs/cgroup
// (podman refuses hybrid layouts) and an overlay over /var/lib, so that
// root podman's /var/lib/containers/cache stays out of the host's.
type podmanNamespace struct {
	cmd *exec.Cmd
}

func startPodmanNamespace(dir string) (*podmanNamespace, error) {
	upper, work := filepath.Join(dir, "varlib-upper"), filepath.Join(dir, "varlib-work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	mountCgroup := "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		mountCgroup = "true"
	}
	script := fmt.Sprintf("set -e\n%s\nmount -t overlay overlay -o lowerdir=/var/lib,upperdir=%s,workdir=%s /var/lib\necho ready\nexec sleep infinity",
		mountCgroup, upper, work)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("podman namespace: %w", err)
	}
	ns := &podmanNamespace{cmd: cmd}
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		ns.stop()
		return nil, fmt.Errorf("podman namespace: %s", strings.TrimSpace(stderr.String()))
	}
	return ns, nil
}

func (ns *podmanNamespace) stop() {
	ns.cmd.Process.Kill()
	ns.cmd.Wait()
}

// podmanStore is podman's configuration for one driver: its own
// graphroot, runroot, storage.conf and containers.conf.
type podmanStore struct {
	label, bin, dir, graph string
	ns                     *podmanNamespace
	env                    []string
	startID                string // the start image, pulled
}

func (r *runner) newPodmanStore(ns *podmanNamespace, bin, label string) (*podmanStore, error) {
	dir, err := os.MkdirTemp(r.cfg.WorkDir, "podman-"+label+"-")
	if err != nil {
		return nil, err
	}
	s := &podmanStore{label: label, bin: bin, dir: dir, graph: filepath.Join(dir, "root"), ns: ns}
	tmp := filepath.Join(dir, "tmp")
	storageConf := fmt.Sprintf("[storage]\ndriver = %q\ngraphroot = %q\nrunroot = %q\n", label, s.graph, filepath.Join(dir, "run"))
	if label == "cfs" {
		storageConf += fmt.Sprintf("\n[storage.options.cfs]\nhost_repo = %q\n", r.cfg.Corpus.Path(r.cfg.Corpus.HostRepo))
	}
	containersConf := fmt.Sprintf(`[containers]
pids_limit = 0
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
pull_policy = "never"
events_logger = "none"
tmp_dir = %q
image_copy_tmp_dir = %q
[network]
network_config_dir = %q
`, filepath.Join(tmp, "libpod"), tmp, filepath.Join(dir, "networks"))
	files := map[string]string{
		"storage.conf":    storageConf,
		"containers.conf": containersConf,
		"policy.json":     `{"default":[{"type":"insecureAcceptAnything"}]}`,
		"registries.conf": "unqualified-search-registries = []\n",
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	s.env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + dir, "TMPDIR=" + tmp,
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_POLICY_JSON=" + filepath.Join(dir, "policy.json"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
	}
	return s, nil
}

// podman runs podman in the namespace and returns its stdout.
func (s *podmanStore) podman(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"-t", strconv.Itoa(s.ns.cmd.Process.Pid), "-m", "--", s.bin}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	cmd.Env = s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s (%s): %w: %s", strings.Join(args, " "), s.label, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// remove resets the store and deletes its folder.
func (s *podmanStore) remove(ctx context.Context) error {
	_, err := s.podman(ctx, "system", "reset", "--force")
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// podmanScenario measures podman itself on cfs and overlay: pulling the
// corpus with `podman pull` into an empty store (min(PullRuns, 3) rounds,
// the drivers interleaved), then `podman run --rm START /bin/true` Runs
// times after one warm-up, interleaved run by run.
func (r *runner) podmanScenario(ctx context.Context) (err error) {
	bin := findPodman()
	if bin == "" {
		r.podmanMissing = true
		r.logf("[podman] skipped: no bin/podman next to cfs-storage-bench (make podman)")
		return nil
	}
	var labels []string
	for _, l := range podmanLabels {
		if slices.Contains(r.cfg.Drivers, l) {
			labels = append(labels, l)
		}
	}
	if len(labels) == 0 {
		return nil
	}
	ns, err := startPodmanNamespace(filepath.Join(r.scratch, "podman-ns"))
	if err != nil {
		return err
	}
	defer ns.stop()
	c := r.cfg.Corpus
	stores := map[string]*podmanStore{}
	defer func() {
		for _, s := range stores {
			if rerr := s.remove(ctx); err == nil && rerr != nil {
				err = rerr
			}
		}
	}()
	rounds := max(1, min(r.cfg.PullRuns, 3))
	pulls, starts := map[string][]time.Duration{}, map[string][]time.Duration{}
	for round := range rounds {
		for i := range labels {
			label := labels[(i+round)%len(labels)]
			if old := stores[label]; old != nil {
				delete(stores, label)
				if err := old.remove(ctx); err != nil {
					return err
				}
			}
			s, err := r.newPodmanStore(ns, bin, label)
			if err != nil {
				return err
			}
			stores[label] = s
			if err := dropCaches(); err != nil {
				return err
			}
			if _, err := readTree(filepath.Join(c.Path(c.Layout), "blobs")); err != nil {
				return fmt.Errorf("read source blobs: %w", err)
			}
			start := time.Now()
			for _, img := range c.Images {
				out, err := s.podman(ctx, "pull", "-q", c.Ref(img))
				if err != nil {
					return err
				}
				if img.Name == c.StartImage {
					f := strings.Fields(out)
					if len(f) == 0 {
						return fmt.Errorf("podman pull %s (%s): no image ID", img.Name, label)
					}
					s.startID = f[len(f)-1]
				}
			}
			pulls[label] = append(pulls[label], time.Since(start))
			r.logf("[podman] %s: pull round %d/%d: %s", label, round+1, rounds, pulls[label][round].Round(time.Millisecond))
		}
	}
	for _, label := range labels { // warm-up
		if _, err := stores[label].podman(ctx, "run", "--rm", stores[label].startID, "/bin/true"); err != nil {
			return err
		}
	}
	for i := range r.cfg.Runs {
		for j := range labels {
			s := stores[labels[(i+j)%len(labels)]]
			start := time.Now()
			if _, err := s.podman(ctx, "run", "--rm", s.startID, "/bin/true"); err != nil {
				return err
			}
			starts[s.label] = append(starts[s.label], time.Since(start))
			if err := syncfs(s.graph); err != nil {
				return err
			}
		}
		if (i+1)%5 == 0 || i+1 == r.cfg.Runs {
			r.logf("[podman] run --rm %d/%d on %s", i+1, r.cfg.Runs, strings.Join(labels, ", "))
		}
	}
	for _, label := range labels {
		r.add("podman", label, "pull time", median(pulls[label]).Seconds(), "s", true)
		r.add("podman", label, "run --rm true (median)", ms(median(starts[label])), "ms", true)
		r.add("podman", label, "run --rm true (p95)", ms(percentile(starts[label], 95)), "ms", false)
	}
	return nil
}
