package scenario

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cfs-storage/cfs-storage/cmd/internal/runtime"
)

// starter starts containers with the OCI runtime exactly as
// `cfs-storage run` does: the runtime found by runtime.Detect, the
// runtime spec of runtime.Spec, run by Runtime.Run.
type starter struct {
	rt  *runtime.Runtime
	dir string // run directories live here
}

func (s *starter) String() string {
	out := strings.Join(append([]string{filepath.Base(s.rt.Path)}, s.rt.GlobalArgs...), " ")
	if s.rt.DetachUnified {
		out += " in a private mount namespace without /sys/fs/cgroup/unified"
	}
	return out
}

// run runs args in container id, whose root is mounted at rootfs, and
// waits for it. The image config of the corpus's images sets only the
// default PATH, which the spec gets anyway, so it is not read.
func (s *starter) run(ctx context.Context, id, rootfs string, args []string) error {
	spec, err := runtime.Spec(&imgspec.ImageConfig{}, runtime.SpecOptions{
		Rootfs: rootfs, Hostname: id[:min(12, len(id))], Command: args, NoCgroups: s.rt.NoCgroups,
	})
	if err != nil {
		return err
	}
	var out bytes.Buffer
	code, err := s.rt.Run(ctx, runtime.RunOptions{
		ID: id, Spec: spec, Dir: filepath.Join(s.dir, id), Stdout: &out, Stderr: &out,
	})
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code %d", code)
	}
	if err != nil {
		return fmt.Errorf("%s run %s: %w: %s", s, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// phases are the parts of one container start.
type phases struct {
	create, mount, run, teardown time.Duration
}

func (p phases) total() time.Duration { return p.create + p.mount + p.run + p.teardown }

// cycle creates a container from an image, mounts it, runs args in it
// (none: no run), unmounts and deletes it.
func (r *runner) cycle(ctx context.Context, bs *benchStore, imageID string, args []string) (p phases, err error) {
	t := time.Now()
	ctr, err := bs.store.CreateContainer("", nil, imageID, "", "", nil)
	if err != nil {
		return p, fmt.Errorf("create container: %w", err)
	}
	p.create = time.Since(t)
	defer func() {
		if err != nil {
			bs.store.Unmount(ctr.ID, true)
			bs.store.DeleteContainer(ctr.ID)
		}
	}()
	t = time.Now()
	mnt, err := bs.store.Mount(ctr.ID, "")
	if err != nil {
		return p, fmt.Errorf("mount container: %w", err)
	}
	p.mount = time.Since(t)
	if len(args) > 0 {
		if err := r.ensureRuntime(ctx); err != nil {
			return p, err
		}
		t = time.Now()
		if err := r.rt.run(ctx, ctr.ID, mnt, args); err != nil {
			return p, err
		}
		p.run = time.Since(t)
	}
	t = time.Now()
	if _, err := bs.store.Unmount(ctr.ID, true); err != nil {
		return p, fmt.Errorf("unmount container: %w", err)
	}
	if err := bs.store.DeleteContainer(ctr.ID); err != nil {
		return p, fmt.Errorf("delete container: %w", err)
	}
	p.teardown = time.Since(t)
	return p, nil
}

func (r *runner) ensureRuntime(ctx context.Context) error {
	if r.rt != nil {
		return nil
	}
	rt, err := runtime.Detect(ctx, "")
	if err != nil {
		return err
	}
	r.rt = &starter{rt: rt, dir: filepath.Join(r.scratch, "run")}
	r.res.Machine.Runtime = r.rt.String() + " (run by the benchmark as `cfs-storage run` runs it)"
	r.logf("[start] runtime: %s", r.rt)
	return nil
}

// start measures container starts from the corpus's start image on
// every store, warm and cold, the drivers interleaved run by run (vfs in
// a block of its own, see below).
func (r *runner) start(ctx context.Context, stores []*benchStore) error {
	c := r.cfg.Corpus
	runs := map[string][]phases{}
	for _, bs := range stores {
		if _, ok := bs.images[c.StartImage]; !ok {
			r.fail("start", bs, fmt.Errorf("start image %s was not pulled", c.StartImage))
		}
	}
	for _, group := range groups(r.live("start", stores)) {
		for _, bs := range group {
			if _, err := r.cycle(ctx, bs, bs.images[c.StartImage], []string{"/bin/true"}); err != nil { // warm-up
				if ctx.Err() != nil {
					return err
				}
				r.fail("start", bs, err)
			}
		}
		for i := range r.cfg.Runs {
			for _, bs := range rotated(group, i) {
				if r.res.Failed("start", bs.label) {
					continue
				}
				p, err := r.cycle(ctx, bs, bs.images[c.StartImage], []string{"/bin/true"})
				if err != nil {
					if ctx.Err() != nil {
						return err
					}
					r.fail("start", bs, err)
					continue
				}
				runs[bs.label] = append(runs[bs.label], p)
				// Untimed: write back what this start dirtied before the
				// next one.
				if err := syncfs(bs.store.GraphRoot()); err != nil {
					return err
				}
			}
			if (i+1)%5 == 0 || i+1 == r.cfg.Runs {
				r.logf("[start] warm %d/%d on %s", i+1, r.cfg.Runs, labels(group))
			}
		}
	}
	for _, bs := range r.live("start", stores) {
		r.addStarts(bs.label, runs[bs.label])
	}
	return r.coldStart(ctx, r.live("start", stores))
}

// addStarts records the start figures of one driver.
func (r *runner) addStarts(label string, runs []phases) {
	pick := func(f func(phases) time.Duration) []time.Duration {
		out := make([]time.Duration, len(runs))
		for i, p := range runs {
			out[i] = f(p)
		}
		return out
	}
	total := pick(phases.total)
	r.add("start", label, "warm median", ms(median(total)), "ms", true)
	r.add("start", label, "warm p95", ms(percentile(total, 95)), "ms", false)
	r.add("start", label, "storage: create + mount + unmount + delete (median)", ms(median(pick(func(p phases) time.Duration { return p.total() - p.run }))), "ms", false)
	r.add("start", label, "create (median)", ms(median(pick(func(p phases) time.Duration { return p.create }))), "ms", false)
	r.add("start", label, "mount (median)", ms(median(pick(func(p phases) time.Duration { return p.mount }))), "ms", false)
	r.add("start", label, "run /bin/true (median)", ms(median(pick(func(p phases) time.Duration { return p.run }))), "ms", false)
	r.add("start", label, "unmount + delete (median)", ms(median(pick(func(p phases) time.Duration { return p.teardown }))), "ms", false)
}

// coldStart times starts of the corpus's cold program after dropping
// caches and letting the host read its own copy of the program's files.
func (r *runner) coldStart(ctx context.Context, stores []*benchStore) error {
	c := r.cfg.Corpus
	n := min(r.cfg.Runs, 5)
	times := map[string][]time.Duration{}
	for _, group := range groups(stores) {
		if err := r.coldStarts(ctx, group, n, times); err != nil {
			return err
		}
	}
	for _, bs := range r.live("start", stores) {
		r.add("start", bs.label, "cold median ("+filepath.Base(c.ColdArgs[0])+")", ms(median(times[bs.label])), "ms", true)
	}
	return nil
}

// coldStarts runs n cold starts on each store of group, interleaved.
func (r *runner) coldStarts(ctx context.Context, group []*benchStore, n int, times map[string][]time.Duration) error {
	c := r.cfg.Corpus
	for i := range n {
		for _, bs := range rotated(group, i) {
			if r.res.Failed("start", bs.label) {
				continue
			}
			if err := dropCaches(); err != nil {
				return err
			}
			if _, err := r.hostRead(); err != nil {
				return err
			}
			if _, err := readFile(r.rt.rt.Path); err != nil {
				return err
			}
			p, err := r.cycle(ctx, bs, bs.images[c.StartImage], c.ColdArgs)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				r.fail("start", bs, fmt.Errorf("cold start: %w", err))
				continue
			}
			times[bs.label] = append(times[bs.label], p.total())
			r.logf("[start] %s: cold %d/%d: %s", bs.label, i+1, n, p.total().Round(time.Millisecond))
		}
	}
	return nil
}

// hostRead reads the memory file set through the host's checkout, as
// the host itself would, and returns the bytes read.
func (r *runner) hostRead() (int64, error) {
	var total int64
	for _, p := range r.memoryFiles() {
		n, err := readFile(filepath.Join(r.cfg.Corpus.Path(r.cfg.Corpus.HostRoot), p))
		if err != nil {
			return total, fmt.Errorf("host read: %w", err)
		}
		total += n
	}
	return total, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(d []time.Duration) time.Duration { return percentile(d, 50) }

// percentile is the nearest-rank percentile.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// groups splits the stores for interleaved measurements: vfs, whose
// starts copy the whole image and whose removals delete it, runs in a
// group of its own after the others, so that its I/O does not fall on
// whichever driver comes next.
func groups(stores []*benchStore) [][]*benchStore {
	var light, heavy []*benchStore
	for _, bs := range stores {
		if bs.label == "vfs" {
			heavy = append(heavy, bs)
		} else {
			light = append(light, bs)
		}
	}
	var out [][]*benchStore
	for _, g := range [][]*benchStore{light, heavy} {
		if len(g) > 0 {
			out = append(out, g)
		}
	}
	return out
}

// labels joins the stores' driver labels for progress lines.
func labels(stores []*benchStore) string {
	out := make([]string, len(stores))
	for i, bs := range stores {
		out[i] = bs.label
	}
	return strings.Join(out, ", ")
}
