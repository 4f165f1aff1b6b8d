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

// depthScenario puts a chain of synthetic layers, makes images of each
// depth on it, and times mounts and starts of containers from them.
func (r *runner) depthScenario(ctx context.Context, bs *benchStore) error {
	depths := Depths
	if r.cfg.Corpus.Kind == "quick" {
		depths = QuickDepths
	}
	maxDepth := slices.Max(depths)
	if r.depth == nil {
		tars, err := corpus.DepthLayers(ctx, r.scratch, maxDepth)
		if err != nil {
			return err
		}
		r.depth = tars
	}
	start := time.Now()
	parent := ""
	top := map[int]string{}
	for i, tarball := range r.depth {
		layer, _, err := bs.store.PutLayer("", parent, nil, "", false, nil, bytes.NewReader(tarball))
		if err != nil {
			return fmt.Errorf("put layer %d: %w", i, err)
		}
		parent = layer.ID
		top[i+1] = layer.ID
	}
	r.logf("[depth] %s: %d layers put in %s", bs.label, maxDepth, time.Since(start).Round(time.Millisecond))
	for _, d := range depths {
		img, err := bs.store.CreateImage("", []string{fmt.Sprintf("localhost/bench/depth%d:latest", d)}, top[d], "", nil)
		if err != nil {
			return fmt.Errorf("image of depth %d: %w", d, err)
		}
		first, err := r.cycle(ctx, bs, img.ID, nil)
		if err != nil {
			return fmt.Errorf("depth %d: %w", d, err)
		}
		var mounts, starts []time.Duration
		for range r.cfg.Runs {
			p, err := r.cycle(ctx, bs, img.ID, nil)
			if err != nil {
				return fmt.Errorf("depth %d: %w", d, err)
			}
			mounts = append(mounts, p.mount)
			p, err = r.cycle(ctx, bs, img.ID, []string{"/bin/true"})
			if err != nil {
				return fmt.Errorf("depth %d: %w", d, err)
			}
			starts = append(starts, p.total())
		}
		r.add("depth", bs.label, fmt.Sprintf("mount, %d layers (median)", d), ms(median(mounts)), "ms", true)
		r.add("depth", bs.label, fmt.Sprintf("first mount, %d layers", d), ms(first.mount), "ms", false)
		r.add("depth", bs.label, fmt.Sprintf("start, %d layers (median)", d), ms(median(starts)), "ms", false)
		r.logf("[depth] %s: %d layers: mount %.2f ms, start %.1f ms (medians)", bs.label, d, ms(median(mounts)), ms(median(starts)))
	}
	return nil
}
