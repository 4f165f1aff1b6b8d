package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/report"
)

// ioCounters are the bytes this process and its waited-for children
// caused to be written to storage.
type ioCounters struct {
	self     int64 // write_bytes − cancelled_write_bytes of /proc/self/io
	children int64 // ru_oublock × 512 of RUSAGE_CHILDREN
}

func (c ioCounters) total() int64 { return c.self + c.children }

func readIO() (ioCounters, error) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return ioCounters{}, fmt.Errorf("read io counters: %w", err)
	}
	defer f.Close()
	var c ioCounters
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "write_bytes":
			c.self += n
		case "cancelled_write_bytes":
			c.self -= n
		}
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &ru); err != nil {
		return c, fmt.Errorf("getrusage: %w", err)
	}
	c.children = ru.Oublock * 512
	return c, nil
}

// dropCaches writes back dirty pages and empties the page cache.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

// readTree reads every regular file under root (or root itself) and
// returns the bytes read.
func readTree(root string) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		n, err := readFile(p)
		total += n
		return err
	})
	return total, err
}

func readFile(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(io.Discard, f)
}

func policyContext() (*signature.PolicyContext, error) {
	policy := &signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return nil, fmt.Errorf("signature policy: %w", err)
	}
	return pc, nil
}

// pullImages pulls every corpus image from src into the store,
// returning the wall time. An image the driver fails to pull is
// skipped (the others are pulled) and named in failed.
func (r *runner) pullImages(ctx context.Context, bs *benchStore, src string) (elapsed time.Duration, failed error) {
	pc, err := policyContext()
	if err != nil {
		return 0, err
	}
	defer pc.Destroy()
	c := r.cfg.Corpus
	var errs []error
	start := time.Now()
	for i, img := range c.Images {
		r.logf("[pull] %s: image %d/%d %s from %s", bs.label, i+1, len(c.Images), img.Name, src)
		if err := r.pullOne(ctx, pc, bs, img, src); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			r.logf("[pull] %s: image %s from %s FAILED: %v", bs.label, img.Name, src, err)
			errs = append(errs, err)
		}
	}
	return time.Since(start), errors.Join(errs...)
}

// pullOne copies one image of the corpus from src into bs.
func (r *runner) pullOne(ctx context.Context, pc *signature.PolicyContext, bs *benchStore, img corpus.Image, src string) error {
	ref, sctx := r.sourceRef(src, img)
	return r.pullRef(ctx, pc, bs, img, ref, sctx)
}

// pullRef copies the corpus image img from the c/image reference ref,
// read with sctx, into bs.
func (r *runner) pullRef(ctx context.Context, pc *signature.PolicyContext, bs *benchStore, img corpus.Image, ref string, sctx *types.SystemContext) error {
	srcRef, err := alltransports.ParseImageName(ref)
	if err != nil {
		return fmt.Errorf("source %s: %w", ref, err)
	}
	dst, err := istorage.Transport.ParseStoreReference(bs.store, "localhost/bench/"+img.Name+":latest")
	if err != nil {
		return fmt.Errorf("destination for %s: %w", img.Name, err)
	}
	opts := &copy.Options{SourceCtx: sctx, DestinationCtx: &types.SystemContext{BlobInfoCacheDir: r.cacheDir}}
	if _, err := copy.Image(ctx, pc, dst, srcRef, opts); err != nil {
		return fmt.Errorf("pull %s: %w", img.Name, err)
	}
	simg, err := istorage.Transport.GetStoreImage(bs.store, dst)
	if err != nil {
		return fmt.Errorf("find pulled %s: %w", img.Name, err)
	}
	bs.images[img.Name] = simg.ID
	return nil
}

// warmUp pulls the corpus's first image from each source into a
// scratch overlay store and drops it, untimed: the first pull of the
// process pays one-time costs (heap growth, go.podman.io/image set-up,
// the first HTTP connection) that would otherwise fall on whichever
// driver is measured first.
func (r *runner) warmUp(ctx context.Context, sources []string) error {
	for _, src := range sources {
		bs, err := r.openStore("overlay")
		if err != nil {
			return err
		}
		pc, err := policyContext()
		if err == nil {
			err = r.pullOne(ctx, pc, bs, r.cfg.Corpus.Images[0], src)
			pc.Destroy()
		}
		if cerr := bs.close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("from %s: %w", src, err)
		}
	}
	return nil
}

// pullResult is one measured pull of the corpus into an empty store.
type pullResult struct {
	elapsed, synced, firstMounts time.Duration
	written                      int64
	// failed names the images the driver could not pull or mount (the
	// figures are then not comparable and are not reported).
	failed error
}

// pullSources are the sources pulled from, and the rounds of each: when
// the pull scenario is off, only one pull from the last source fills the
// stores.
func (r *runner) pullSources() ([]string, int) {
	if !r.want("pull") {
		return r.cfg.Sources[len(r.cfg.Sources)-1:], 1
	}
	return r.cfg.Sources, max(1, r.cfg.PullRuns)
}

// pullRounds pulls the corpus from every source into an empty store of
// every driver PullRuns times, the drivers interleaved round by round
// (rotating which goes first; vfs in a group of its own, see groups),
// and records the medians. Earlier rounds pull into scratch stores that
// are dropped; the last round from the last source (the registry, when
// on) fills the stores the other scenarios use.
func (r *runner) pullRounds(ctx context.Context, stores []*benchStore) error {
	sources, rounds := r.pullSources()
	results := map[string][]pullResult{} // label + "\x00" + source
	for _, group := range groups(stores) {
		for i, src := range sources {
			if err := r.pullGroup(ctx, group, src, rounds, i == len(sources)-1, results); err != nil {
				return err
			}
		}
	}
	for _, bs := range stores {
		if bs.label == ComposefsDriver {
			rem := r.checkComposefs(ctx, bs, sources[len(sources)-1])
			r.logf("[pull] %s", rem)
			r.res.Remarks = append(r.res.Remarks, rem)
		}
	}
	if !r.want("pull") {
		return nil
	}
	for _, src := range sources {
		for _, bs := range stores {
			r.addPulls(bs.label, src, results[bs.label+"\x00"+src])
		}
	}
	return nil
}

// pullGroup runs the rounds of pulls from src on the stores of one
// group (see groups), interleaved; with fill, the last round pulls into
// the stores themselves.
func (r *runner) pullGroup(ctx context.Context, group []*benchStore, src string, rounds int, fill bool, results map[string][]pullResult) error {
	for round := range rounds {
		for _, bs := range rotated(group, round) {
			target := bs
			if !fill || round < rounds-1 {
				scratch, err := r.openStore(bs.label)
				if err != nil {
					return err
				}
				target = scratch
			}
			res, err := r.pull(ctx, target, src)
			if err == nil && round == rounds-1 {
				// Untimed: the last round's trees, against the images'.
				res.failed = errors.Join(res.failed, r.verifyTrees(target))
			}
			if target != bs {
				if cerr := target.close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				return fmt.Errorf("%s from %s: %w", bs.label, src, err)
			}
			key := bs.label + "\x00" + src
			results[key] = append(results[key], res)
			if res.failed != nil {
				r.logf("[pull] %s from %s: round %d/%d: FAILED: %v", bs.label, src, round+1, rounds, res.failed)
				continue
			}
			r.logf("[pull] %s from %s: round %d/%d: %s, %s written, first mounts %s", bs.label, src, round+1, rounds,
				res.elapsed.Round(time.Millisecond), fmtBytes(res.written), res.firstMounts.Round(time.Millisecond))
		}
	}
	return nil
}

// addPulls records the medians of one driver's pulls from src, or its
// failure.
func (r *runner) addPulls(label, src string, rs []pullResult) {
	for _, x := range rs {
		if x.failed != nil {
			r.res.Fail(report.Failure{Scenario: "pull", Driver: label, Metrics: src + ": ", Error: x.failed.Error()})
			return
		}
	}
	if len(rs) == 0 {
		return
	}
	pick := func(f func(pullResult) time.Duration) float64 {
		d := make([]time.Duration, len(rs))
		for i, x := range rs {
			d[i] = f(x)
		}
		return median(d).Seconds()
	}
	written := make([]time.Duration, len(rs)) // bytes, through the same median
	for i, x := range rs {
		written[i] = time.Duration(x.written)
	}
	p := src + ": "
	r.add("pull", label, p+"time", pick(func(x pullResult) time.Duration { return x.elapsed }), "s", true)
	r.add("pull", label, p+"time + sync", pick(func(x pullResult) time.Duration { return x.synced }), "s", false)
	r.add("pull", label, p+"first mount of each image", pick(func(x pullResult) time.Duration { return x.firstMounts }), "s", false)
	r.add("pull", label, p+"time + first mounts", pick(func(x pullResult) time.Duration { return x.elapsed + x.firstMounts }), "s", false)
	r.add("pull", label, p+"bytes written", float64(median(written)), "bytes", true)
}

// pull measures pulling the corpus from src into the empty store bs:
// wall time, wall time including a final syncfs, bytes written, then
// the first mount of each image. Images the driver fails on are in
// res.failed; the error is for failures of the benchmark itself.
func (r *runner) pull(ctx context.Context, bs *benchStore, src string) (pullResult, error) {
	var res pullResult
	if err := dropCaches(); err != nil {
		return res, err
	}
	if _, err := readTree(r.sourceBlobs(src)); err != nil {
		return res, fmt.Errorf("read source blobs: %w", err)
	}
	before, err := readIO()
	if err != nil {
		return res, err
	}
	res.elapsed, res.failed = r.pullImages(ctx, bs, src)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	after, err := readIO()
	if err != nil {
		return res, err
	}
	res.written = after.total() - before.total()
	syncStart := time.Now()
	if err := syncfs(bs.store.GraphRoot()); err != nil {
		return res, err
	}
	res.synced = res.elapsed + time.Since(syncStart)
	var ferr error
	res.firstMounts, ferr = r.firstMounts(ctx, bs)
	res.failed = errors.Join(res.failed, ferr)
	return res, ctx.Err()
}

// firstMounts creates, mounts, unmounts and deletes a container of each
// pulled image once, in corpus order, and returns the total time: what
// a store still does after the pull before every image can run (cfs
// builds an image's flattened composefs image at its first mount).
// Images that were not pulled are skipped; those that fail are named
// in the error.
func (r *runner) firstMounts(ctx context.Context, bs *benchStore) (time.Duration, error) {
	var total time.Duration
	var errs []error
	for _, img := range r.cfg.Corpus.Images {
		id, ok := bs.images[img.Name]
		if !ok {
			continue
		}
		p, err := r.cycle(ctx, bs, id, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("first mount of %s: %w", img.Name, err))
			continue
		}
		total += p.total()
	}
	return total, errors.Join(errs...)
}

func syncfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", path, err)
	}
	return nil
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
}
