package scenario

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
)

// Depths are the image depths of the depth scenario; QuickDepths are
// used with the quick corpus, to keep it under a minute.
var (
	Depths      = []int{1, 10, 50, 100}
	QuickDepths = []int{1, 10, 20}
)

// depthScenario puts a chain of synthetic layers on every store, makes
// images of each depth on it, and times mounts and starts of containers
// from them, the drivers interleaved run by run.
func (r *runner) depthScenario(ctx context.Context, stores []*benchStore) error {
	depths := Depths
	if r.cfg.Corpus.Kind == "quick" {
		depths = QuickDepths
	}
	if r.depth == nil {
		tars, err := corpus.DepthLayers(ctx, r.scratch, slices.Max(depths))
		if err != nil {
			return err
		}
		r.depth = tars
	}
	images := map[string]map[int]string{} // driver → depth → image ID
	for _, bs := range stores {
		ids, err := r.putDepthImages(bs, depths)
		if err != nil {
			r.fail("depth", bs, err)
			continue
		}
		images[bs.label] = ids
	}
	failed := func(bs *benchStore, d int, err error) error {
		if ctx.Err() != nil {
			return err
		}
		r.fail("depth", bs, fmt.Errorf("depth %d: %w", d, err))
		return nil
	}
	for _, d := range depths {
		mounts, starts := map[string][]time.Duration{}, map[string][]time.Duration{}
		for _, bs := range r.live("depth", stores) {
			first, err := r.cycle(ctx, bs, images[bs.label][d], nil)
			if err != nil {
				if err := failed(bs, d, err); err != nil {
					return err
				}
				continue
			}
			r.add("depth", bs.label, "first mount, "+layers(d), ms(first.mount), "ms", false)
		}
		for _, group := range groups(r.live("depth", stores)) {
			for i := range r.cfg.Runs {
				for _, bs := range rotated(group, i) {
					if r.res.Failed("depth", bs.label) {
						continue
					}
					img := images[bs.label][d]
					p, err := r.cycle(ctx, bs, img, nil)
					if err == nil {
						mounts[bs.label] = append(mounts[bs.label], p.mount)
						p, err = r.cycle(ctx, bs, img, []string{"/bin/true"})
					}
					if err != nil {
						if err := failed(bs, d, err); err != nil {
							return err
						}
						continue
					}
					starts[bs.label] = append(starts[bs.label], p.total())
				}
			}
		}
		for _, bs := range r.live("depth", stores) {
			m, s := median(mounts[bs.label]), median(starts[bs.label])
			r.add("depth", bs.label, "mount, "+layers(d)+" (median)", ms(m), "ms", true)
			r.add("depth", bs.label, "start, "+layers(d)+" (median)", ms(s), "ms", false)
			r.logf("[depth] %s: %d layer(s): mount %.2f ms, start %.1f ms (medians)", bs.label, d, ms(m), ms(s))
		}
	}
	return nil
}

// putDepthImages puts the synthetic layer chain into a store and makes
// an image at each depth; it returns the image IDs by depth.
func (r *runner) putDepthImages(bs *benchStore, depths []int) (map[int]string, error) {
	start := time.Now()
	parent := ""
	top := map[int]string{}
	for i, tarball := range r.depth {
		layer, _, err := bs.store.PutLayer("", parent, nil, "", false, nil, bytes.NewReader(tarball))
		if err != nil {
			return nil, fmt.Errorf("put layer %d: %w", i, err)
		}
		parent = layer.ID
		top[i+1] = layer.ID
	}
	r.logf("[depth] %s: %d layers put in %s", bs.label, len(r.depth), time.Since(start).Round(time.Millisecond))
	ids := map[int]string{}
	for _, d := range depths {
		img, err := bs.store.CreateImage("", []string{fmt.Sprintf("localhost/bench/depth%d:latest", d)}, top[d], "", nil)
		if err != nil {
			return nil, fmt.Errorf("image of depth %d: %w", d, err)
		}
		ids[d] = img.ID
	}
	return ids, nil
}

// layers names a depth: "1 layer", "10 layers".
func layers(n int) string {
	if n == 1 {
		return "1 layer"
	}
	return fmt.Sprintf("%d layers", n)
}
