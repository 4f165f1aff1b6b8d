// Package scenario runs the benchmark's scenarios on each driver: every
// driver gets a fresh containers/storage store (temporary graph and run
// roots next to the corpus, so hard links to the host repository are
// possible), the corpus images are pulled into it, and the scenarios
// run one after the other on that store.
package scenario

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	storage "go.podman.io/storage"
	_ "go.podman.io/storage/drivers/overlay" // the reference driver
	_ "go.podman.io/storage/drivers/vfs"
	"go.podman.io/storage/types"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/registry"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/report"
	_ "github.com/cfs-storage/cfs-storage/driver" // registers "cfs"
)

// All lists the scenarios in the order they run on a store.
var All = []string{"pull", "partial-pull", "disk", "start", "memory", "depth", "podman"}

// Drivers lists the drivers the benchmark knows: overlay-composefs is
// c/storage's overlay in its composefs mode (use_composefs=true, with
// partial pulls: enable_partial_images and convert_images), with
// `cfs-storage mkcomposefs` as its mkcomposefs.
var Drivers = []string{"cfs", "cfs-nohost", "overlay", "overlay-composefs", "vfs"}

// Sources lists where images are pulled from, in the order they are
// pulled: the corpus's OCI layout, and docker-registry on 127.0.0.1
// serving the corpus pushed as zstd:chunked (the only source from which
// c/storage's overlay writes composefs images).
var Sources = []string{"oci", "registry"}

// ComposefsDriver is the overlay variant in composefs mode.
const ComposefsDriver = "overlay-composefs"

// Config is one benchmark run.
type Config struct {
	// Corpus is the loaded corpus.
	Corpus *corpus.Corpus
	// Drivers and Scenarios select what runs (names from Drivers, All).
	Drivers   []string
	Scenarios []string
	// Sources are the pull sources (names from Sources; empty: all).
	Sources []string
	// Runs is the number of timed repetitions of each latency figure.
	Runs int
	// PullRuns is the number of pulls per driver (the median is
	// reported); 0 means 1.
	PullRuns int
	// PartialRuns is the number of pulls per configuration and case in
	// the partial-pull scenario (the median is reported); 0 means 1.
	PartialRuns int
	// WorkDir holds the temporary stores; it must be on the corpus's
	// filesystem for host hard links.
	WorkDir string
	// Progress receives progress lines.
	Progress io.Writer
	// CLI is the cfs-storage binary, for its df report ("" to skip)
	// and as overlay-composefs's mkcomposefs (needed for that driver).
	CLI string
}

// runner holds what one benchmark run shares between drivers.
type runner struct {
	cfg     Config
	res     *report.Results
	rt      *starter // detected on first use
	depth   [][]byte
	bound   *lowerBound
	logf    func(format string, args ...any)
	scratch string
	// memFiles is the memory file set (paths relative to a root).
	memFiles []string
	// dfMissing is set when df could not run for want of the CLI.
	dfMissing bool
	// podmanMissing is set when the podman scenario found no podman.
	podmanMissing bool
	// reg is the registry source, when it is on.
	reg *registry.Registry
	// cacheDir is c/image's blob info cache for every copy.
	cacheDir string
	// trees are the corpus images' trees, by name (see verifyTrees).
	trees map[string]map[string]entry
}

// Run runs the selected scenarios on every selected driver and returns
// the results (Command, Started and Duration are the caller's).
func Run(ctx context.Context, cfg Config) (*report.Results, error) {
	if err := Validate(cfg.Drivers, cfg.Scenarios, cfg.Runs); err != nil {
		return nil, err
	}
	if len(cfg.Sources) == 0 {
		cfg.Sources = Sources
	}
	if err := ValidateSources(cfg.Sources); err != nil {
		return nil, err
	}
	cfg.Sources = ordered(cfg.Sources)
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("work folder: %w", err)
	}
	scratch, err := os.MkdirTemp(cfg.WorkDir, "scratch-")
	if err != nil {
		return nil, fmt.Errorf("work folder: %w", err)
	}
	defer os.RemoveAll(scratch)
	r := &runner{
		cfg: cfg, scratch: scratch,
		res:  &report.Results{Scenarios: cfg.Scenarios, Runs: cfg.Runs, Corpus: cfg.Corpus.Version, Machine: machineInfo()},
		logf: func(format string, args ...any) { fmt.Fprintf(cfg.Progress, format+"\n", args...) },
	}
	r.res.Drivers = partialColumns(cfg.Drivers, r.partialOn())
	r.res.CorpusInfo = corpusInfo(cfg.Corpus)
	r.cacheDir = filepath.Join(scratch, "blob-info-cache")
	if err := os.MkdirAll(r.cacheDir, 0o755); err != nil {
		return nil, err
	}
	if slices.Contains(cfg.Drivers, ComposefsDriver) {
		if err := installMkcomposefs(cfg.WorkDir, cfg.CLI); err != nil {
			return nil, err
		}
	}
	if slices.Contains(cfg.Sources, "registry") && (r.want("pull") || r.want("disk") || r.want("start") || r.want("memory") || r.want("partial-pull")) {
		if err := r.startRegistry(ctx); err != nil {
			return nil, err
		}
		defer r.reg.Stop()
	}
	if err := r.runAll(ctx); err != nil {
		return nil, err
	}
	r.res.Notes = r.notes()
	return r.res, nil
}

// Validate checks a selection of drivers and scenarios and a run count.
func Validate(drivers, scenarios []string, runs int) error {
	for _, d := range drivers {
		if !slices.Contains(Drivers, d) {
			return fmt.Errorf("unknown driver %q (known: %s)", d, strings.Join(Drivers, ", "))
		}
	}
	for _, s := range scenarios {
		if !slices.Contains(All, s) {
			return fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(All, ", "))
		}
	}
	if len(drivers) == 0 {
		return fmt.Errorf("no drivers selected (known: %s)", strings.Join(Drivers, ", "))
	}
	if runs < 1 {
		return fmt.Errorf("runs must be at least 1, not %d", runs)
	}
	return nil
}

// ValidateSources checks a selection of pull sources.
func ValidateSources(sources []string) error {
	for _, s := range sources {
		if !slices.Contains(Sources, s) {
			return fmt.Errorf("unknown source %q (known: %s)", s, strings.Join(Sources, ", "))
		}
	}
	return nil
}

// ordered returns the sources in the order of Sources, each once.
func ordered(sources []string) []string {
	var out []string
	for _, s := range Sources {
		if slices.Contains(sources, s) {
			out = append(out, s)
		}
	}
	return out
}

func (r *runner) want(scenario string) bool { return slices.Contains(r.cfg.Scenarios, scenario) }

// benchStore is a store opened for one driver.
type benchStore struct {
	label string // cfs, cfs-nohost, overlay, overlay-composefs, vfs
	opts  []string
	dir   string
	store storage.Store
	// images are the pulled corpus images by name (their store IDs).
	images map[string]string
}

func (r *runner) openStore(label string) (*benchStore, error) {
	return r.newStore(label, func(o *types.StoreOptions) { r.driverOptions(label, o) })
}

// driverOptions sets the driver, its options and the pull options of
// the store of a driver label.
func (r *runner) driverOptions(label string, o *types.StoreOptions) {
	switch label {
	case "cfs":
		o.GraphDriverName = "cfs"
		o.GraphDriverOptions = []string{"cfs.host_repo=" + r.cfg.Corpus.Path(r.cfg.Corpus.HostRepo)}
	case "cfs-nohost":
		o.GraphDriverName = "cfs"
		o.GraphDriverOptions = []string{"cfs.host_repo="}
	case ComposefsDriver:
		// As Fedora configures it: composefs, and the partial pulls
		// that are the only path on which overlay writes composefs
		// images (convert_images: layers without a zstd:chunked TOC
		// are converted too).
		o.GraphDriverName = "overlay"
		o.GraphDriverOptions = []string{"overlay.use_composefs=true"}
		o.PullOptions = map[string]string{"enable_partial_images": "true", "convert_images": "true"}
	default:
		o.GraphDriverName = label
	}
}

// newStore opens a store labelled label in a fresh folder of the work
// folder (graph root and run root set), set filling in the rest.
func (r *runner) newStore(label string, set func(*types.StoreOptions)) (*benchStore, error) {
	dir, err := os.MkdirTemp(r.cfg.WorkDir, "store-"+label+"-")
	if err != nil {
		return nil, err
	}
	o := types.StoreOptions{RunRoot: filepath.Join(dir, "run"), GraphRoot: filepath.Join(dir, "root")}
	set(&o)
	st, err := storage.GetStore(o)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("open %s store: %w", label, err)
	}
	return &benchStore{label: label, opts: o.GraphDriverOptions, dir: dir, store: st, images: map[string]string{}}, nil
}

func (b *benchStore) close() error {
	_, err := b.store.Shutdown(true)
	if rerr := os.RemoveAll(b.dir); err == nil && rerr != nil {
		err = fmt.Errorf("remove %s: %w", b.dir, rerr)
	}
	return err
}

// runAll opens a fresh store per driver and runs the scenarios. Pull,
// disk and memory run one driver at a time (they measure the process's
// writes, the disk and the page cache); the latency scenarios (start,
// depth) interleave the drivers run by run, rotating their order, so
// that background load on the machine falls on all drivers alike.
func (r *runner) runAll(ctx context.Context) (err error) {
	var stores []*benchStore
	defer func() {
		for _, bs := range stores {
			if cerr := bs.close(); err == nil && cerr != nil {
				err = fmt.Errorf("driver %s: %w", bs.label, cerr)
			}
		}
	}()
	for _, label := range r.cfg.Drivers {
		bs, err := r.openStore(label)
		if err != nil {
			return err
		}
		stores = append(stores, bs)
	}
	needImages := r.want("pull") || r.want("disk") || r.want("start") || r.want("memory")
	sources, _ := r.pullSources()
	if err := r.step(ctx, "pull warm-up", "overlay", needImages, func() error { return r.warmUp(ctx, sources) }); err != nil {
		return err
	}
	if err := r.step(ctx, "pull", "all drivers", needImages, func() error { return r.pullRounds(ctx, stores) }); err != nil {
		return err
	}
	if err := r.step(ctx, "partial-pull", "all drivers", r.partialOn(), func() error { return r.partialPull(ctx) }); err != nil {
		return err
	}
	for _, bs := range stores {
		if err := r.stepOn(ctx, "disk", bs, r.want("disk"), func() error { return r.disk(ctx, bs) }); err != nil {
			return err
		}
	}
	if err := r.step(ctx, "start", "all drivers", r.want("start"), func() error { return r.start(ctx, stores) }); err != nil {
		return err
	}
	for _, bs := range stores {
		if err := r.stepOn(ctx, "memory", bs, r.want("memory"), func() error { return r.memory(ctx, bs) }); err != nil {
			return err
		}
	}
	if err := r.step(ctx, "depth", "all drivers", r.want("depth"), func() error { return r.depthScenario(ctx, stores) }); err != nil {
		return err
	}
	return r.step(ctx, "podman", strings.Join(podmanLabels, ", "), r.want("podman"), func() error { return r.podmanScenario(ctx) })
}

// step runs one scenario step when on, with a progress line and errors
// naming the scenario and the driver.
func (r *runner) step(ctx context.Context, name, who string, on bool, run func() error) error {
	return r.runStep(ctx, name, who, on, run, func(err error) error {
		return fmt.Errorf("%s (%s): %w", name, who, err)
	})
}

// stepOn runs one scenario step on one driver's store like step, but a
// failure of the driver is recorded as a failure row and the run goes
// on; only an interruption stops it.
func (r *runner) stepOn(ctx context.Context, name string, bs *benchStore, on bool, run func() error) error {
	return r.runStep(ctx, name, bs.label, on, run, func(err error) error {
		r.fail(name, bs, err)
		return nil
	})
}

// runStep runs run when on, after checking ctx, and logs how long it
// took; an error of run is what failed makes of it, unless ctx was
// interrupted meanwhile.
func (r *runner) runStep(ctx context.Context, name, who string, on bool, run func() error, failed func(error) error) error {
	if !on {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	if err := run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s (%s): interrupted: %w", name, who, ctx.Err())
		}
		return failed(err)
	}
	r.logf("[%s] %s: done in %s", name, who, time.Since(start).Round(time.Millisecond))
	return nil
}

// fail records that a driver could not complete a scenario (the
// metrics it has no value of show the failure).
func (r *runner) fail(scenario string, bs *benchStore, err error) {
	r.logf("[%s] %s: FAILED: %v", scenario, bs.label, err)
	r.res.Fail(report.Failure{Scenario: scenario, Driver: bs.label, Error: err.Error()})
}

// live returns the stores that have no failure in scenario.
func (r *runner) live(scenario string, stores []*benchStore) []*benchStore {
	var out []*benchStore
	for _, bs := range stores {
		if !r.res.Failed(scenario, bs.label) {
			out = append(out, bs)
		}
	}
	return out
}

// rotated returns stores (or drivers) starting at index i (mod len), so
// that no driver always runs first in an interleaved round.
func rotated[T any](stores []T, i int) []T {
	k := i % len(stores)
	return append(slices.Clone(stores[k:]), stores[:k]...)
}

func (r *runner) add(scenario, driver, metric string, value float64, unit string, primary bool) {
	r.res.Add(report.Measurement{Scenario: scenario, Driver: driver, Metric: metric, Value: value, Unit: unit, Primary: primary})
}

func corpusInfo(c *corpus.Corpus) []string {
	out := []string{fmt.Sprintf("host: bare ostree repo %s (branch %s), files read by the host from its hard-link checkout", c.HostRepo, c.HostRef)}
	if p, ok := c.Packages["host"]; ok {
		out[0] += " (packages: " + strings.Join(p, " ") + ")"
	}
	for _, img := range c.Images {
		out = append(out, fmt.Sprintf("image %s: %d layers, %s", img.Name, img.Layers, img.Description))
	}
	return out
}

// notes say how each figure was measured.
func (r *runner) notes() []string {
	n := []string{
		"Each driver gets a fresh c/storage store (go.podman.io/storage) under " + r.cfg.WorkDir + ", on the corpus's filesystem; cfs runs with host_repo set to the corpus's host repo, cfs-nohost with host_repo empty.",
		"pull: copy.Image (go.podman.io/image) of every image into an empty containers-storage store, from each source in turn (" + strings.Join(r.cfg.Sources, ", ") + "): `oci` is the corpus's OCI layout (gzip layers); `registry` is docker-registry (Debian's distribution registry) on 127.0.0.1 over plain HTTP, `docker://`, serving the corpus pushed once as zstd:chunked (kept beside the corpus), the only source from which c/storage takes its partial-pull path (ranged reads; with enable_partial_images, which only overlay-composefs sets). After an untimed warm-up pull per source into a scratch overlay store, each figure is the median of " + strconv.Itoa(max(1, r.cfg.PullRuns)) + " pulls per driver and source, the drivers interleaved round by round (vfs, whose pulls, starts and removals write and delete whole copies of the images, is measured in a block of its own after the other drivers, in pull, start and depth alike, so that its I/O does not fall on whichever driver follows it); each pull after `sync` + drop_caches and a read of the source's blobs (the source is in memory, as from a fast network); c/image's blob info cache is a fresh one under the work folder. Bytes written are write_bytes − cancelled_write_bytes of /proc/self/io plus the children's ru_oublock×512 (overlay unpacks in re-executed children). `time + sync` adds a syncfs of the store's filesystem after the pull. `first mount of each image`: then one container of each image is created, mounted, unmounted and deleted (cfs builds an image's flattened composefs image at its first mount, not during the pull); `time + first mounts` is the time until every image can run. The last pull from the last source fills the stores the other scenarios use. Untimed, after the last round of each source, a container of each image is mounted and its tree (type, permissions, owner, size, symlink target of every path) compared with the tree the image's layers make: a driver whose tree differs, or that fails to pull or mount an image, gets `failed` in that source's rows, with the error.",
		"overlay-composefs: c/storage's overlay with use_composefs=true and the pull options enable_partial_images=true and convert_images=true (as Fedora's composefs setup), its mkcomposefs a link named mkcomposefs to `cfs-storage` (byte-identical to libcomposefs' tool; Debian has no composefs package) first on PATH. It writes a composefs image per layer only on a partial pull (registry source); layers from the OCI layout, and the depth scenario's layers (store.PutLayer), are plain overlay layers.",
	}
	if pn := r.partialNote(); pn != "" {
		n = append(n, pn)
	}
	n = append(n,
		"disk: st_blocks×512 of every inode of the host repo and the graph root, each (dev, inode) once, so objects hard-linked between host and store count once.",
	)
	if r.bound != nil {
		n = append(n, r.bound.describe())
	}
	if r.dfMissing {
		n = append(n, "`cfs-storage df` was not run: no cfs-storage binary next to cfs-storage-bench or on PATH (`make build` puts both in bin/).")
	}
	n = append(n,
		"start: create container (store.CreateContainer), mount (store.Mount), run the start program with the OCI runtime as `cfs-storage run` does (same runtime detection, runtime spec and run), unmount, delete; median and p95 over the runs after one untimed warm-up, the drivers interleaved run by run (rotating which goes first; vfs in its own block), an untimed syncfs after each start; `storage` is the median of the start minus the runtime's part. Cold: `sync` + drop_caches, then the host reads its copy of the program's files (the start image's program and memory file set, through the host checkout) and the runtime binary, then one timed start of the program (`"+strings.Join(r.cfg.Corpus.ColdArgs, " ")+"`).",
		"memory: drop_caches, the host reads the file set through its checkout, then the same paths are read through a container's mount; growth of Cached+Buffers in /proc/meminfo, and the data pages newly resident under the container's files (mincore through the mount, which reports the backing file's pages).",
		fmt.Sprintf("depth: synthetic images of %v layers (quick corpus: %v), one chain put with store.PutLayer; the first mount of each is timed alone, then mount and a full start (/bin/true) are timed over the runs, the drivers interleaved run by run.", Depths, QuickDepths),
	)
	if r.want("podman") {
		if r.podmanMissing {
			n = append(n, "podman: not run, no bin/podman next to cfs-storage-bench (`make podman` builds podman with the cfs driver linked in).")
		} else {
			n = append(n, "podman: bin/podman (podman with the cfs driver linked in, `make podman`) with runc, in a private mount namespace with cgroup2 at /sys/fs/cgroup, a store of its own per driver (cfs with host_repo set to the corpus's host repo); `pull time` is `podman pull` of every corpus image from the OCI layout into an empty store after drop_caches and a read of the blobs, the median of min(pull runs, 3) rounds, the drivers interleaved; `run --rm true` is the wall time of `podman run --rm START-IMAGE /bin/true` over the runs after one warm-up, the drivers interleaved run by run (rotating which goes first), an untimed syncfs after each.")
		}
	}
	return n
}
