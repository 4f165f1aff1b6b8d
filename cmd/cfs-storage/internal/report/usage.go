// Package report implements `cfs-storage df`: the disk usage of a store
// per image and per layer. On the cfs driver it reads the shared object
// store (which objects each layer references, how big they are, and
// which are still hard-linked with files outside the store); on other
// drivers it reports the layer sizes c/storage records.
package report

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"syscall"

	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/driver"
)

// Usage is the whole report.
type Usage struct {
	Driver string       `json:"driver"`
	Root   string       `json:"root"`
	Images []ImageUsage `json:"images"`
	Layers []LayerUsage `json:"layers"`
	// ReadOnlyStores are the read-only image stores whose layers this
	// store's images use (cfs only).
	ReadOnlyStores []StoreShare `json:"readOnlyStores,omitempty"`
	Total          Totals       `json:"total"`
}

// StoreShare is what this store's images use of one read-only image
// store: Layers of it, whose Objects hold Bytes of contents read from
// there, not stored here; Imported of those bytes are in this store too
// (objects a layer here keeps, linked or copied in).
type StoreShare struct {
	Root     string `json:"root"`
	Layers   int    `json:"layers"`
	Objects  int    `json:"objects"`
	Bytes    int64  `json:"bytes"`
	Imported int64  `json:"imported"`
}

// ImageUsage is one image's share of the store. Logical is the sum of
// its layers' sizes. On cfs, Unique counts the bytes of objects only
// this image uses, Shared those it shares with other images, and
// HostShared those still hard-linked with files outside the store (the
// host repository). On other drivers the same columns count whole
// layers: a layer used by this image alone is unique.
type ImageUsage struct {
	ID         string   `json:"id"`
	Names      []string `json:"names"`
	Layers     int      `json:"layers"`
	Logical    int64    `json:"logical"`
	Unique     int64    `json:"unique"`
	Shared     int64    `json:"shared"`
	HostShared int64    `json:"hostShared"`
}

// LayerUsage is one layer's share of the store. Unique and Shared split
// its objects' bytes by whether other layers use them too; Metadata is
// the driver's own files for the layer (its composefs image).
type LayerUsage struct {
	ID          string   `json:"id"`
	Images      []string `json:"images"`
	Logical     int64    `json:"logical"`
	Objects     int      `json:"objects"`
	ObjectBytes int64    `json:"objectBytes"`
	Unique      int64    `json:"unique"`
	Shared      int64    `json:"shared"`
	HostShared  int64    `json:"hostShared"`
	Metadata    int64    `json:"metadata"`
}

// Totals sum the store. StoreBytes is what the images take here (on
// cfs: objects on disk plus metadata); PlainBytes is what the same
// images take as plain layer directories (the sum of their distinct
// layers' sizes, as overlay or vfs would store them).
type Totals struct {
	Images          int   `json:"images"`
	Layers          int   `json:"layers"`
	Objects         int64 `json:"objects"`
	ObjectBytes     int64 `json:"objectBytes"`
	ObjectDiskBytes int64 `json:"objectDiskBytes"`
	MetadataBytes   int64 `json:"metadataBytes"`
	// FlatImages and FlatImageBytes are the flattened image cache (part
	// of MetadataBytes): one image per chain mounted, which gc drops for
	// chains no image or container uses.
	FlatImages      int   `json:"flatImages"`
	FlatImageBytes  int64 `json:"flatImageBytes"`
	HostSharedBytes int64 `json:"hostSharedBytes"`
	StoreBytes      int64 `json:"storeBytes"`
	PlainBytes      int64 `json:"plainBytes"`
	// HostLookups counts the host repository lookups that linked
	// nothing in (the contents were written instead), over the store's
	// life: none found or not usable (declined), or failed with an
	// error, the latest of which is kept.
	HostLookups HostLookups `json:"hostLookups"`
}

// HostLookups are the object store's declined and failed lookups of
// contents among the host's objects (dedup.AlternateStats).
type HostLookups struct {
	Declined  int64  `json:"declined"`
	Failed    int64  `json:"failed"`
	LastError string `json:"lastError,omitempty"`
}

// object is what df needs of one object.
type object struct {
	size   int64
	shared bool // more than one link: shared with a file outside the store
}

// chains returns every image's layer IDs (top first) and the layers.
func chains(store storage.Store) ([]storage.Image, map[string][]string, map[string]*storage.Layer, error) {
	imgs, err := store.Images()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list images: %w", err)
	}
	byImage := map[string][]string{}
	layers := map[string]*storage.Layer{}
	for _, img := range imgs {
		for id := img.TopLayer; id != ""; {
			l, ok := layers[id]
			if !ok {
				if l, err = store.Layer(id); err != nil {
					return nil, nil, nil, fmt.Errorf("image %.12s: layer %.12s: %w", img.ID, id, err)
				}
				layers[id] = l
			}
			byImage[img.ID] = append(byImage[img.ID], id)
			id = l.Parent
		}
	}
	return imgs, byImage, layers, nil
}

// Compute builds the report for store.
func Compute(ctx context.Context, store storage.Store) (*Usage, error) {
	imgs, byImage, layers, err := chains(store)
	if err != nil {
		return nil, err
	}
	u := &Usage{Driver: store.GraphDriverName(), Root: store.GraphRoot()}
	imagesOf := map[string][]string{}
	for _, img := range imgs {
		for _, id := range byImage[img.ID] {
			imagesOf[id] = append(imagesOf[id], img.ID)
		}
	}
	d, err := store.GraphDriver()
	if err != nil {
		return nil, fmt.Errorf("open driver %s: %w", store.GraphDriverName(), err)
	}
	if ext, ok := driver.AsExtension(d); ok {
		err = computeObjects(ctx, u, ext, imgs, byImage, layers, imagesOf)
	} else {
		computeLayers(u, imgs, byImage, layers, imagesOf)
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(u.Layers, func(i, j int) bool { return u.Layers[i].ID < u.Layers[j].ID })
	u.Total.Images, u.Total.Layers = len(u.Images), len(u.Layers)
	for _, l := range u.Layers {
		u.Total.PlainBytes += l.Logical
	}
	return u, nil
}

// computeLayers fills the report from c/storage's layer sizes alone.
func computeLayers(u *Usage, imgs []storage.Image, byImage map[string][]string, layers map[string]*storage.Layer, imagesOf map[string][]string) {
	for _, img := range imgs {
		iu := ImageUsage{ID: img.ID, Names: img.Names, Layers: len(byImage[img.ID])}
		for _, id := range byImage[img.ID] {
			size := layerSize(layers[id])
			iu.Logical += size
			if len(imagesOf[id]) > 1 {
				iu.Shared += size
			} else {
				iu.Unique += size
			}
		}
		u.Images = append(u.Images, iu)
	}
	for id, l := range layers {
		size := layerSize(l)
		lu := LayerUsage{ID: id, Images: shortIDs(imagesOf[id]), Logical: size, Unique: size}
		u.Layers = append(u.Layers, lu)
		u.Total.StoreBytes += size
	}
}

func layerSize(l *storage.Layer) int64 {
	if l.UncompressedSize > 0 {
		return l.UncompressedSize
	}
	return 0
}

func shortIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%.12s", id)
	}
	return out
}

// diskUsage sums the allocated bytes under root, each inode once; with
// skipLinked, leaving out files with other names too (counted there).
func diskUsage(root string, skipLinked bool) (int64, error) {
	seen := map[uint64]bool{}
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || seen[st.Ino] || (skipLinked && !d.IsDir() && st.Nlink > 1) {
			return nil
		}
		seen[st.Ino] = true
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", root, err)
	}
	return total, nil
}

// statObjects stats every object the layers reference, once each.
func statObjects(objs *dedup.Store, refs map[string][]dedup.Digest) (map[dedup.Digest]object, error) {
	out := map[dedup.Digest]object{}
	for layer, ds := range refs {
		for _, dg := range ds {
			if _, ok := out[dg]; ok {
				continue
			}
			info, err := objs.Stat(dg)
			if errors.Is(err, dedup.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
				out[dg] = object{} // missing: fsck reports it
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("layer %.12s: object %s: %w (run `cfs-storage fsck`)", layer, dg, err)
			}
			o := object{size: info.Size()}
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				o.shared = st.Nlink > 1
			}
			out[dg] = o
		}
	}
	return out, nil
}
