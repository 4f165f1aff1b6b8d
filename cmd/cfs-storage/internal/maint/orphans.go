package maint

import (
	"errors"
	"fmt"
	"sort"

	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/state"
)

// orphanReport says what removeOrphanLayers did.
type orphanReport struct {
	Removed int
	// Kept counts unused layers left because a pull (or another command
	// whose layers precede their image or container) is in progress.
	Kept int
}

// removeOrphanLayers deletes the layers no image or container uses (a
// pull refused at layer N leaves layers 1…N-1 so). Such layers also
// exist, legitimately, while a pull runs: its layers precede its image.
// So it works only while holding the layer gate exclusively; when a
// command holds it, it only counts them.
func removeOrphanLayers(store storage.Store) (orphanReport, error) {
	var rep orphanReport
	gate, err := state.TryLayersExclusive(store)
	if err != nil {
		return rep, err
	}
	defer gate.Release()
	// Layers first: a container's layer and record are made under one
	// lock of the layer store, so a layer listed here has its container
	// listed below.
	layers, err := store.Layers()
	if err != nil {
		return rep, fmt.Errorf("list layers: %w", err)
	}
	orphans, err := unusedLayers(store, layers)
	if err != nil {
		return rep, err
	}
	if gate == nil {
		rep.Kept = len(orphans)
		return rep, nil
	}
	var errs []error
	for _, l := range orphans {
		if err := store.DeleteLayer(l.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove unused layer %.12s: %w", l.ID, err))
			continue
		}
		rep.Removed++
	}
	return rep, errors.Join(errs...)
}

// unusedLayers returns the layers of layers that no image (its top
// layer, or an ID-mapped copy of it) or container uses, directly or as
// a parent, and that are neither mounted nor in a read-only store;
// children come before parents.
func unusedLayers(store storage.Store, layers []storage.Layer) ([]storage.Layer, error) {
	byID := make(map[string]*storage.Layer, len(layers))
	for i := range layers {
		byID[layers[i].ID] = &layers[i]
	}
	used := map[string]bool{}
	mark := func(id string) {
		for id != "" && !used[id] {
			used[id] = true
			l := byID[id]
			if l == nil {
				return
			}
			id = l.Parent
		}
	}
	imgs, err := store.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	for _, img := range imgs {
		mark(img.TopLayer)
		for _, m := range img.MappedTopLayers {
			mark(m)
		}
	}
	ctrs, err := store.Containers()
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs {
		mark(c.LayerID)
	}
	depth := func(l *storage.Layer) int {
		n := 0
		for seen := map[string]bool{}; l != nil && !seen[l.ID]; l = byID[l.Parent] {
			seen[l.ID] = true
			n++
		}
		return n
	}
	var out []storage.Layer
	for i := range layers {
		if l := &layers[i]; !used[l.ID] && l.MountCount == 0 && !l.ReadOnly {
			out = append(out, *l)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return depth(&out[i]) > depth(&out[j]) })
	return out, nil
}
