package scenario

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.podman.io/storage/types"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/registry"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/report"
	"github.com/cfs-storage/cfs-storage/driver"
)

// OstreeReposDriver is the column of overlay with partial pulls and the
// host repository as its ostree_repos (partial-pull scenario only).
const OstreeReposDriver = "overlay-ostree"

// partialConfig is a driver configuration of the partial-pull scenario.
type partialConfig struct {
	// label is its column.
	label string
	// set fills in a store's driver, driver options and pull options
	// (GraphRoot is set).
	set func(o *types.StoreOptions)
}

// partialConfigs are the configurations of the selected drivers: cfs
// with and without the host, both with partial pulls and ostree_repos
// naming the driver's payload-link directory; overlay with partial
// pulls, and again with the host repository as ostree_repos;
// overlay-composefs as everywhere. vfs has no partial pulls.
func (r *runner) partialConfigs() []partialConfig {
	host := r.cfg.Corpus.Path(r.cfg.Corpus.HostRepo)
	var out []partialConfig
	for _, label := range r.cfg.Drivers {
		switch label {
		case "cfs", "cfs-nohost":
			out = append(out, partialConfig{label: label, set: func(o *types.StoreOptions) {
				r.driverOptions(label, o)
				o.PullOptions = map[string]string{"enable_partial_images": "true", "ostree_repos": driver.PartialPullRepo(o.GraphRoot)}
			}})
		case "overlay":
			out = append(out, partialConfig{label: label, set: func(o *types.StoreOptions) {
				o.GraphDriverName = "overlay"
				o.PullOptions = map[string]string{"enable_partial_images": "true", "convert_images": "true"}
			}}, partialConfig{label: OstreeReposDriver, set: func(o *types.StoreOptions) {
				o.GraphDriverName = "overlay"
				o.PullOptions = map[string]string{"enable_partial_images": "true", "convert_images": "true", "ostree_repos": host}
			}})
		case ComposefsDriver:
			out = append(out, partialConfig{label: label, set: func(o *types.StoreOptions) { r.driverOptions(label, o) }})
		}
	}
	return out
}

// partialOn says whether the partial-pull scenario runs: it needs the
// registry source.
func (r *runner) partialOn() bool {
	return r.want("partial-pull") && slices.Contains(r.cfg.Sources, "registry")
}

// partialColumns returns the report's columns: the drivers, and
// overlay-ostree after the overlay columns when the partial-pull
// scenario runs on overlay.
func partialColumns(drivers []string, on bool) []string {
	if !on || !slices.Contains(drivers, "overlay") {
		return drivers
	}
	at := 0
	for i, d := range drivers {
		if strings.HasPrefix(d, "overlay") {
			at = i + 1
		}
	}
	return slices.Insert(slices.Clone(drivers), at, OstreeReposDriver)
}

// partialCase is what one partial pull pulls: the whole corpus in
// order, or the target image alone; and its floor.
type partialCase struct {
	// prefix starts its metric names.
	prefix string
	images []corpus.Image
	// floor is against the host's contents, noHost against none;
	// floorErr says why there is none.
	floor, noHost floor
	floorErr      error
}

// partialResult is one partial pull of a case into an empty store.
type partialResult struct {
	elapsed time.Duration
	written int64
	fetched registry.Counts
	// failed names the images the configuration failed to pull, or
	// whose trees are not the images'.
	failed error
}

// partialCases are the corpus and its start image (python on the
// default corpus), with their floors. A floor that cannot be computed
// is logged and left out (the fetched bytes are still measured).
func (r *runner) partialCases(ctx context.Context) []*partialCase {
	c := r.cfg.Corpus
	cases := []*partialCase{{prefix: "corpus: ", images: c.Images}}
	for _, img := range c.Images {
		if img.Name == c.StartImage {
			cases = append(cases, &partialCase{prefix: img.Name + " onto host: ", images: []corpus.Image{img}})
		}
	}
	r.logf("[partial-pull] floor: hashing the host's contents, reading the layers' TOCs from the registry")
	host, err := hostContents(c.Path(c.HostRepo))
	tr := newTOCReader(r.reg.Addr)
	tocs := map[string]imageTOCs{}
	for _, img := range c.Images {
		if err != nil {
			break
		}
		tocs[img.Name], err = tr.image(ctx, img.Name, registryRepo(img), "latest")
	}
	for _, pc := range cases {
		if err != nil {
			pc.floorErr = err
			continue
		}
		var imgs []imageTOCs
		for _, img := range pc.images {
			imgs = append(imgs, tocs[img.Name])
		}
		if pc.floor, pc.floorErr = computeFloor(imgs, host); pc.floorErr == nil {
			pc.noHost, pc.floorErr = computeFloor(imgs, nil)
		}
	}
	for _, pc := range cases {
		r.logf("[partial-pull] %s", pc.describeFloor())
	}
	return cases
}

func (pc *partialCase) name() string { return strings.TrimSuffix(pc.prefix, ": ") }

// describeFloor says what the case's floor is, for the log and the
// report's remarks.
func (pc *partialCase) describeFloor() string {
	if pc.floorErr != nil {
		return fmt.Sprintf("partial-pull floor of %s: not computed (no ratios to it): %v", pc.name(), pc.floorErr)
	}
	f, n := pc.floor, pc.noHost
	images := fmt.Sprintf("%d images", len(pc.images))
	if len(pc.images) == 1 {
		images = "1 image"
	}
	return fmt.Sprintf("partial-pull floor of %s (%s, %d distinct layers, %s compressed): %d regular-file contents new to host + store, %s compressed (%s uncompressed) = %s the compressed size; "+
		"without the host: %d, %s = %s. Not in the floor: the layers' TOCs and tar-splits, %s, which a partial pull reads too.",
		pc.name(), images, f.layers, fmtBytes(f.compressed), f.files, fmtBytes(f.bytes), fmtBytes(f.size), ratio(f.bytes, f.compressed),
		n.files, fmtBytes(n.bytes), ratio(n.bytes, n.compressed), fmtBytes(f.meta))
}

func ratio(a, b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f×", float64(a)/float64(b))
}

// partialPull measures partial pulls from the registry, through a
// counting proxy, into empty stores of every configuration: the corpus
// in order, and the start image alone; bytes fetched against the floor
// and the compressed size, time, bytes written. The configurations are
// interleaved round by round; the last round's trees are checked.
func (r *runner) partialPull(ctx context.Context) error {
	configs := r.partialConfigs()
	if len(configs) == 0 {
		r.logf("[partial-pull] none of the drivers %s has partial pulls: nothing to do", strings.Join(r.cfg.Drivers, ", "))
		return nil
	}
	cases := r.partialCases(ctx)
	if err := ctx.Err(); err != nil {
		return err
	}
	proxy, err := registry.StartProxy(r.reg.Addr)
	if err != nil {
		return err
	}
	defer proxy.Stop()
	// Untimed: the first pull through the proxy of the process pays
	// one-time costs.
	warm := &partialCase{prefix: "warm-up: ", images: r.cfg.Corpus.Images[:1]}
	if _, err := r.partialOnce(ctx, proxy, configs[0], warm, false); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	rounds := max(1, r.cfg.PartialRuns)
	results := map[string][]partialResult{} // label + "\x00" + prefix
	for round := range rounds {
		for _, cfg := range rotated(configs, round) {
			for _, pc := range cases {
				res, err := r.partialOnce(ctx, proxy, cfg, pc, round == rounds-1)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", cfg.label, pc.name(), err)
				}
				key := cfg.label + "\x00" + pc.prefix
				results[key] = append(results[key], res)
				if res.failed != nil {
					r.logf("[partial-pull] %s, %s, round %d/%d: FAILED: %v", cfg.label, pc.name(), round+1, rounds, res.failed)
					continue
				}
				floorRatio := "–"
				if pc.floorErr == nil {
					floorRatio = ratio(res.fetched.Bytes, pc.floor.bytes)
				}
				r.logf("[partial-pull] %s, %s, round %d/%d: %s, fetched %s in %d blob GETs (%d ranged), %s the floor, %s written", cfg.label, pc.name(), round+1, rounds,
					res.elapsed.Round(time.Millisecond), fmtBytes(res.fetched.Bytes), res.fetched.Requests, res.fetched.Ranged, floorRatio, fmtBytes(res.written))
			}
		}
	}
	for _, pc := range cases {
		r.res.Remarks = append(r.res.Remarks, pc.describeFloor())
		for _, cfg := range configs {
			r.addPartial(cfg.label, pc, results[cfg.label+"\x00"+pc.prefix])
		}
	}
	return nil
}

// partialOnce pulls a case's images through the proxy into an empty
// store of cfg, as pull does (after sync + drop_caches and a read of the
// registry's blobs), counting the bytes fetched; with verify, the
// trees are then checked, untimed.
func (r *runner) partialOnce(ctx context.Context, proxy *registry.Proxy, cfg partialConfig, pc *partialCase, verify bool) (res partialResult, err error) {
	bs, err := r.newStore(cfg.label, cfg.set)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := bs.close(); err == nil {
			err = cerr
		}
	}()
	pol, err := policyContext()
	if err != nil {
		return res, err
	}
	defer pol.Destroy()
	if err := dropCaches(); err != nil {
		return res, err
	}
	if _, err := readTree(r.reg.Data); err != nil {
		return res, fmt.Errorf("read source blobs: %w", err)
	}
	before, err := readIO()
	if err != nil {
		return res, err
	}
	counts := proxy.Counts()
	var errs []error
	start := time.Now()
	for _, img := range pc.images {
		if err := r.pullRef(ctx, pol, bs, img, proxy.Ref(registryRepo(img), "latest"), registry.SystemContext(r.cacheDir)); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			errs = append(errs, err)
		}
	}
	res.elapsed = time.Since(start)
	res.fetched = proxy.Counts().Sub(counts)
	after, err := readIO()
	if err != nil {
		return res, err
	}
	res.written = after.total() - before.total()
	if verify {
		errs = append(errs, r.verifyTrees(bs))
	}
	res.failed = errors.Join(errs...)
	return res, ctx.Err()
}

// addPartial records a configuration's figures for a case (medians,
// nearest rank), or its failure.
func (r *runner) addPartial(label string, pc *partialCase, rs []partialResult) {
	for _, x := range rs {
		if x.failed != nil {
			r.res.Fail(report.Failure{Scenario: "partial-pull", Driver: label, Metrics: pc.prefix, Error: x.failed.Error()})
			return
		}
	}
	if len(rs) == 0 {
		return
	}
	med := func(f func(partialResult) int64) int64 {
		d := make([]time.Duration, len(rs))
		for i, x := range rs {
			d[i] = time.Duration(f(x))
		}
		return int64(median(d))
	}
	fetched := med(func(x partialResult) int64 { return x.fetched.Bytes })
	p := pc.prefix
	r.add("partial-pull", label, p+"fetched", float64(fetched), "bytes", true)
	if pc.floorErr == nil && pc.floor.bytes > 0 {
		r.add("partial-pull", label, p+"fetched ÷ floor", float64(fetched)/float64(pc.floor.bytes), "ratio", false)
	}
	if pc.floorErr == nil && pc.floor.compressed > 0 {
		r.add("partial-pull", label, p+"fetched ÷ compressed size", float64(fetched)/float64(pc.floor.compressed), "ratio", false)
	}
	r.add("partial-pull", label, p+"time", time.Duration(med(func(x partialResult) int64 { return int64(x.elapsed) })).Seconds(), "s", true)
	r.add("partial-pull", label, p+"bytes written", float64(med(func(x partialResult) int64 { return x.written })), "bytes", false)
	r.add("partial-pull", label, p+"ranged blob requests", float64(med(func(x partialResult) int64 { return x.fetched.Ranged })), "count", false)
}

// partialNote is the method text of the partial-pull scenario ("" when
// it was not selected).
func (r *runner) partialNote() string {
	if !r.want("partial-pull") {
		return ""
	}
	if !r.partialOn() {
		return "partial-pull: not run, it pulls from the registry source (--sources with registry; needs docker-registry)."
	}
	return "partial-pull: pulls from the registry source (docker-registry on 127.0.0.1 serving the corpus pushed as zstd:chunked) through a counting reverse proxy on 127.0.0.1 in front of it; " +
		"`fetched` is the response body bytes of every blob GET through it (whole or ranged, layers and image configs; manifests not counted), `ranged blob requests` the blob GETs with a Range header (0: no partial pull). " +
		"Two cases, each pulled (copy.Image) into an empty store of each configuration: `corpus`, every image in corpus order; `" + r.cfg.Corpus.StartImage + " onto host`, the start image alone " +
		"(on the default corpus python, onto a host that has python3). Configurations: `cfs` (host_repo = the corpus's host repo) and `cfs-nohost` (no host), both with the pull options " +
		"enable_partial_images=true and ostree_repos = driver.PartialPullRepo(graph root), the directory the driver fills with payload links named by SHA-256 to its store objects and, with host_repo, " +
		"the host's, so that c/storage's differ copies those contents instead of fetching them (until the driver fills it, cfs fetches what its layers pulled partially before do not have); " +
		"`overlay`: c/storage's overlay with enable_partial_images=true and convert_images=true (the reference of the ratios in parentheses); `" + OstreeReposDriver + "`: the same with ostree_repos = the host repo " +
		"(c/storage looks there only for objects/xx/<sha256>.payload-link files, which `ostree commit` makes only with core.payload-link-threshold set; the corpus's host repo is committed with Debian's ostree defaults, " +
		"so this reports what c/storage finds in it as it is); `" + ComposefsDriver + "` as in pull. vfs has no partial pulls. " +
		"Floor: for each image in order, each of its layers not pulled before (a layer already in the store is reused, not fetched), each regular-file entry of the layer's TOC with content " +
		"whose SHA-256 (the TOC's digest) is neither a content of the host (SHA-256 of every .file object of the host repo) nor counted before (an earlier entry, layer or image of the case) adds its compressed " +
		"bytes, the TOC's endOffset − offset (the file's zstd frames, every chunk of it); the TOCs are read from the registry as c/storage's differ reads them (the range of the layer's manifest-position " +
		"annotation, checked against its TOC digest annotation, zstd-decompressed). The floor leaves out what every partial pull fetches besides file contents (TOCs, tar-splits, manifests, configs), " +
		"so a pull that fetches no known content is still a little above 1×. `fetched ÷ compressed size` is against the case's distinct layer blobs. Time and bytes written as in pull (after sync + drop_caches " +
		"and a read of the registry's blobs; the proxy runs in this process); the median (nearest rank) of " + fmt.Sprint(max(1, r.cfg.PartialRuns)) + " pull(s) per configuration and case (--partial-runs), " +
		"the configurations interleaved round by round (rotating which goes first), after an untimed warm-up pull of the corpus's first image. After the last round, untimed, a container of each pulled image is mounted and its tree compared with the " +
		"image's: a difference or a failed pull makes that case's rows `failed [n]`."
}
