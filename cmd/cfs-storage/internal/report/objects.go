package report

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/driver"
)

// layerRefs reads the object refs of every layer (a set per layer).
func layerRefs(objs *dedup.Store, layers map[string]*storage.Layer) (map[string][]dedup.Digest, error) {
	refs := map[string][]dedup.Digest{}
	for id := range layers {
		ds, err := objs.Refs(id)
		if errors.Is(err, dedup.ErrNotFound) {
			continue // no regular file above the inline threshold
		}
		if err != nil {
			return nil, fmt.Errorf("read object refs of layer %.12s: %w (run `cfs-storage fsck`)", id, err)
		}
		seen := map[dedup.Digest]bool{}
		for _, d := range ds {
			if !seen[d] {
				seen[d] = true
				refs[id] = append(refs[id], d)
			}
		}
	}
	return refs, nil
}

// computeObjects fills the report from the cfs object store.
func computeObjects(ctx context.Context, u *Usage, ext driver.Extension, imgs []storage.Image, byImage map[string][]string,
	layers map[string]*storage.Layer, imagesOf map[string][]string) error {
	objs := ext.Objects()
	refs, err := layerRefs(objs, layers)
	if err != nil {
		return err
	}
	info, err := statObjects(objs, refs)
	if err != nil {
		return err
	}
	layersUsing := map[dedup.Digest]int{}
	for _, ds := range refs {
		for _, d := range ds {
			layersUsing[d]++
		}
	}
	imagesUsing := map[dedup.Digest]int{}
	imageObjs := map[string]map[dedup.Digest]bool{}
	for _, img := range imgs {
		set := map[dedup.Digest]bool{}
		for _, id := range byImage[img.ID] {
			for _, d := range refs[id] {
				set[d] = true
			}
		}
		for d := range set {
			imagesUsing[d]++
		}
		imageObjs[img.ID] = set
	}
	for _, img := range imgs {
		iu := ImageUsage{ID: img.ID, Names: img.Names, Layers: len(byImage[img.ID])}
		for _, id := range byImage[img.ID] {
			iu.Logical += layerSize(layers[id])
		}
		for d := range imageObjs[img.ID] {
			o := info[d]
			if imagesUsing[d] > 1 {
				iu.Shared += o.size
			} else {
				iu.Unique += o.size
			}
			if o.shared {
				iu.HostShared += o.size
			}
		}
		u.Images = append(u.Images, iu)
	}
	for id, l := range layers {
		lu := LayerUsage{ID: id, Images: shortIDs(imagesOf[id]), Logical: layerSize(l), Objects: len(refs[id])}
		for _, d := range refs[id] {
			o := info[d]
			lu.ObjectBytes += o.size
			if layersUsing[d] > 1 {
				lu.Shared += o.size
			} else {
				lu.Unique += o.size
			}
			if o.shared {
				lu.HostShared += o.size
			}
		}
		if lu.Metadata, err = diskUsage(filepath.Join(ext.Home(), "layers", id), false); err != nil {
			return err
		}
		u.Total.MetadataBytes += lu.Metadata
		u.Layers = append(u.Layers, lu)
	}
	if u.ReadOnlyStores, err = readOnlyShares(ctx, ext, layers); err != nil {
		return err
	}
	return objectTotals(ctx, u, ext)
}

// readOnlyShares sums, per read-only image store, the layers of it the
// images use and the objects those layers use.
func readOnlyShares(ctx context.Context, ext driver.Extension, layers map[string]*storage.Layer) ([]StoreShare, error) {
	byStore := map[string]*StoreShare{}
	objects := map[string]map[dedup.Digest]int64{}
	var roots []string
	for id := range layers {
		root := ext.ReadOnlyStore(id)
		if root == "" {
			continue
		}
		if byStore[root] == nil {
			byStore[root], objects[root] = &StoreShare{Root: root}, map[dedup.Digest]int64{}
			roots = append(roots, root)
		}
		byStore[root].Layers++
		objs, err := ext.LayerObjects(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("layer %.12s of read-only store %s: %w", id, root, err)
		}
		for d, n := range objs {
			objects[root][d] = n
		}
	}
	sort.Strings(roots)
	out := make([]StoreShare, 0, len(roots))
	for _, root := range roots {
		sh := byStore[root]
		for d, n := range objects[root] {
			sh.Objects++
			sh.Bytes += n
			if ext.Objects().Has(d) {
				sh.Imported += n
			}
		}
		out = append(out, *sh)
	}
	return out, nil
}

// objectTotals adds the object store's own totals and the flattened
// image cache to the report.
func objectTotals(ctx context.Context, u *Usage, ext driver.Extension) error {
	st, err := ext.Objects().Stats(ctx)
	if err != nil {
		return fmt.Errorf("object store statistics: %w", err)
	}
	// A flattened image linked to its layer's diff image is counted
	// with the layer.
	cache, err := diskUsage(filepath.Join(ext.Home(), "images"), true)
	if err != nil {
		return err
	}
	u.Total.Objects, u.Total.ObjectBytes, u.Total.ObjectDiskBytes = st.Objects, st.Bytes, st.DiskBytes
	u.Total.HostSharedBytes = st.Shared.Bytes
	alt := st.Alternates
	u.Total.HostLookups = HostLookups{Declined: alt.Declined.Objects, Failed: alt.Failed.Objects, LastError: alt.LastError}
	u.Total.MetadataBytes += cache
	flat, err := ext.FlatImages()
	if err != nil {
		return err
	}
	for _, n := range flat {
		u.Total.FlatImages++
		u.Total.FlatImageBytes += n
	}
	u.Total.StoreBytes = st.DiskBytes + u.Total.MetadataBytes
	return nil
}
