package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// ImageProblem is a layer image that fails its check.
type ImageProblem struct {
	// Layer is the layer the image belongs to ("" for an orphan).
	Layer string
	// Path is the image file.
	Path string
	// Detail says what is wrong and what to do.
	Detail string
	// Repaired is true when the image was a cache (a flattened image or
	// an orphan) and was removed; the next mount rebuilds it.
	Repaired bool
}

// CheckMode says whether CheckImages repairs what it can.
type CheckMode int

const (
	// CheckOnly reports problems and changes nothing.
	CheckOnly CheckMode = iota
	// CheckRepair also removes damaged caches (flattened images, unless
	// mounted) and rebuilds them, and removes orphaned ones.
	CheckRepair
)

// checkImages verifies every layer's composefs images: each must hash to
// the fs-verity digest recorded when it was written and read back as a
// valid image. A damaged diff image means the layer must be pulled again;
// a damaged flattened image is only a cache and, with CheckRepair, is
// removed (unless mounted) to be rebuilt on the next mount.
func (d *core) checkImages(ctx context.Context, mode CheckMode) ([]ImageProblem, error) {
	repair := mode == CheckRepair
	ids, err := d.layers.list()
	if err != nil {
		return nil, err
	}
	var problems []ImageProblem
	known := map[string]bool{}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return problems, err
		}
		known[id] = true
		m, err := d.layers.readMeta(id)
		if err != nil {
			problems = append(problems, ImageProblem{Layer: id, Path: d.layers.path(id), Detail: err.Error() + "; remove the layer and pull its image again"})
			continue
		}
		var images []string
		if m.Sealed {
			images = append(images, d.layers.diffImage(id))
		}
		if m.Base {
			images = append(images, d.layers.baseImage(id))
		}
		for _, img := range images {
			if err := checkImage(img); err != nil {
				problems = append(problems, ImageProblem{Layer: id, Path: img, Detail: err.Error() + "; remove the layer and pull its image again"})
			}
		}
		if p, ok := d.checkFlat(ctx, id, repair); ok {
			problems = append(problems, p)
		}
	}
	// A flattened image of a read-only store's layer is no orphan.
	return append(problems, d.images.orphans(func(id string) bool { return known[id] || d.layers.exists(id) }, repair)...), nil
}

// checkFlat checks layer id's cached flattened image, if it has one.
// Repairing removes a damaged one and builds it again from the layer
// images, which are checked on the way.
func (d *core) checkFlat(ctx context.Context, id string, repair bool) (ImageProblem, bool) {
	path := d.images.path(id)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return ImageProblem{}, false
	}
	err := checkImage(path)
	if err == nil {
		return ImageProblem{}, false
	}
	p := ImageProblem{Layer: id, Path: path, Detail: err.Error() + "; it is a cache: fsck --repair removes it and the next mount rebuilds it"}
	if repair && !d.mountedElsewhere(id) {
		p.Repaired, _ = d.images.drop(id)
		if p.Repaired {
			if err := d.ensureFlat(ctx, id); err != nil {
				p.Detail += "; removed, not rebuilt: " + err.Error()
			} else {
				p.Detail += "; rebuilt from the layer images"
			}
		}
	}
	return p, true
}

// checkImage compares an image's fs-verity digest with the one recorded
// beside it, then reads its whole tree.
func checkImage(path string) error {
	recorded, err := os.ReadFile(path + digestSuffix)
	if err != nil {
		return fmt.Errorf("no recorded digest: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sum, _, err := fsverity.Digest(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if got := fsverity.Hex(sum); !bytes.Equal(bytes.TrimSpace(recorded), []byte(got)) {
		return fmt.Errorf("image digest is %s, recorded %s: the image is damaged", got, bytes.TrimSpace(recorded))
	}
	if _, err := parseImage(path, data); err != nil {
		return fmt.Errorf("unreadable image: %w", err)
	}
	return nil
}
