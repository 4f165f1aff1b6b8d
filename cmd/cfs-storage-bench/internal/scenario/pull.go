package scenario

import (
	"bufio"
	"context"
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
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
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

// pullImages pulls every corpus image into the store, returning the
// wall time.
func (r *runner) pullImages(ctx context.Context, bs *benchStore) (time.Duration, error) {
	pc, err := policyContext()
	if err != nil {
		return 0, err
	}
	defer pc.Destroy()
	c := r.cfg.Corpus
	start := time.Now()
	for i, img := range c.Images {
		r.logf("[pull] %s: image %d/%d %s", bs.label, i+1, len(c.Images), img.Name)
		if err := r.pullOne(ctx, pc, bs, img); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// pullOne copies one image of the corpus into bs.
func (r *runner) pullOne(ctx context.Context, pc *signature.PolicyContext, bs *benchStore, img corpus.Image) error {
	c := r.cfg.Corpus
	src, err := alltransports.ParseImageName(c.Ref(img))
	if err != nil {
		return fmt.Errorf("source %s: %w", c.Ref(img), err)
	}
	dst, err := istorage.Transport.ParseStoreReference(bs.store, "localhost/bench/"+img.Name+":latest")
	if err != nil {
		return fmt.Errorf("destination for %s: %w", img.Name, err)
	}
	if _, err := copy.Image(ctx, pc, dst, src, &copy.Options{}); err != nil {
		return fmt.Errorf("pull %s: %w", img.Name, err)
	}
	simg, err := istorage.Transport.GetStoreImage(bs.store, dst)
	if err != nil {
		return fmt.Errorf("find pulled %s: %w", img.Name, err)
	}
	bs.images[img.Name] = simg.ID
	return nil
}

// warmUp pulls the corpus's first image into a scratch overlay store and
// drops it, untimed: the first pull of the process pays one-time costs
// (heap growth, go.podman.io/image set-up) that would otherwise fall on
// whichever driver is measured first.
func (r *runner) warmUp(ctx context.Context) error {
	bs, err := r.openStore("overlay")
	if err != nil {
		return err
	}
	pc, err := policyContext()
	if err == nil {
		defer pc.Destroy()
		err = r.pullOne(ctx, pc, bs, r.cfg.Corpus.Images[0])
	}
	if cerr := bs.close(); err == nil {
		err = cerr
	}
	return err
}

// pullResult is one measured pull of the corpus into an empty store.
type pullResult struct {
	elapsed, synced, firstMounts time.Duration
	written                      int64
}

// pullRounds pulls the corpus into an empty store of every driver
// PullRuns times, the drivers interleaved round by round (rotating which
// goes first; vfs in a group of its own, see groups), and records the
// medians. Earlier rounds pull into scratch
// stores that are dropped; the last round fills the stores the other
// scenarios use.
func (r *runner) pullRounds(ctx context.Context, stores []*benchStore) error {
	rounds := max(1, r.cfg.PullRuns)
	results := map[string][]pullResult{}
	for _, group := range groups(stores) {
		if err := r.pullGroup(ctx, group, rounds, results); err != nil {
			return err
		}
	}
	if !r.want("pull") {
		return nil
	}
	for _, bs := range stores {
		r.addPulls(bs.label, results[bs.label])
	}
	return nil
}

// pullGroup runs the rounds of pulls on the stores of one group (see
// groups), interleaved.
func (r *runner) pullGroup(ctx context.Context, group []*benchStore, rounds int, results map[string][]pullResult) error {
	for round := range rounds {
		for _, bs := range rotated(group, round) {
			target := bs
			if round < rounds-1 {
				scratch, err := r.openStore(bs.label)
				if err != nil {
					return err
				}
				target = scratch
			}
			res, err := r.pull(ctx, target)
			if target != bs {
				if cerr := target.close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", bs.label, err)
			}
			results[bs.label] = append(results[bs.label], res)
			r.logf("[pull] %s: round %d/%d: %s, %s written, first mounts %s", bs.label, round+1, rounds,
				res.elapsed.Round(time.Millisecond), fmtBytes(res.written), res.firstMounts.Round(time.Millisecond))
		}
	}
	return nil
}

// addPulls records the medians of one driver's pulls.
func (r *runner) addPulls(label string, rs []pullResult) {
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
	r.add("pull", label, "time", pick(func(x pullResult) time.Duration { return x.elapsed }), "s", true)
	r.add("pull", label, "time + sync", pick(func(x pullResult) time.Duration { return x.synced }), "s", false)
	r.add("pull", label, "first mount of each image", pick(func(x pullResult) time.Duration { return x.firstMounts }), "s", false)
	r.add("pull", label, "time + first mounts", pick(func(x pullResult) time.Duration { return x.elapsed + x.firstMounts }), "s", false)
	r.add("pull", label, "bytes written", float64(median(written)), "bytes", true)
}

// pull measures pulling the corpus into the empty store bs: wall time,
// wall time including a final syncfs, bytes written, then the first
// mount of each image.
func (r *runner) pull(ctx context.Context, bs *benchStore) (pullResult, error) {
	var res pullResult
	if err := dropCaches(); err != nil {
		return res, err
	}
	if _, err := readTree(filepath.Join(r.cfg.Corpus.Path(r.cfg.Corpus.Layout), "blobs")); err != nil {
		return res, fmt.Errorf("read source blobs: %w", err)
	}
	before, err := readIO()
	if err != nil {
		return res, err
	}
	if res.elapsed, err = r.pullImages(ctx, bs); err != nil {
		return res, err
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
	res.firstMounts, err = r.firstMounts(ctx, bs)
	return res, err
}

// firstMounts creates, mounts, unmounts and deletes a container of each
// pulled image once, in corpus order, and returns the total time: what
// a store still does after the pull before every image can run (cfs
// builds an image's flattened composefs image at its first mount).
func (r *runner) firstMounts(ctx context.Context, bs *benchStore) (time.Duration, error) {
	var total time.Duration
	for _, img := range r.cfg.Corpus.Images {
		p, err := r.cycle(ctx, bs, bs.images[img.Name], nil)
		if err != nil {
			return 0, fmt.Errorf("first mount of %s: %w", img.Name, err)
		}
		total += p.total()
	}
	return total, nil
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
