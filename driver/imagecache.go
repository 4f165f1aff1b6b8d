package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// imageCache reads the layers' diff images and keeps the flattened
// images, <home>/images/<id>.cfs: the merged tree of the chain ending at
// layer id, which a mount of id mounts. A flattened image is a cache,
// built at the first mount that needs it, rebuilt when removed; it is
// only ever built for a chain of sealed layers. Every image is checked
// against its recorded digest before its first use in this open store
// (imageChecks), or by the kernel where it has fs-verity.
type imageCache struct {
	dir    string // <home>/images
	layers *layerStore
	checks imageChecks
	// mode is the store's fs-verity mode; verity is true when flattened
	// images get fs-verity (whenever new objects get it).
	mode   dedup.VerityMode
	verity bool
}

// path is where the flattened image of the chain ending at id is cached.
func (c *imageCache) path(id string) string { return filepath.Join(c.dir, id+".cfs") }

// files are the files of id's flattened image: the image and its
// recorded digest.
func (c *imageCache) files(id string) []string {
	return []string{c.path(id), c.path(id) + digestSuffix}
}

// errUnsealed is returned for a layer met unsealed in a chain being
// flattened: the caller seals it (see core.sealing) and tries again.
type errUnsealed struct{ id string }

func (e *errUnsealed) Error() string { return "cfs: layer " + e.id + " is not sealed" }

// read reads the composefs tree of the image at path, checked against
// its recorded digest (once per file in this open store).
func (c *imageCache) read(path string) (*tree.Tree, error) {
	// Read whole: the reader's many small reads (an inode, an xattr
	// block) cost a syscall each from a file.
	data, err := c.checks.read(path)
	if err != nil {
		return nil, err
	}
	return parseImage(path, data)
}

// readDiff reads the sealed layer id's own image, checked.
func (c *imageCache) readDiff(id string) (*tree.Tree, error) {
	t, err := c.read(c.layers.diffImage(id))
	if errors.Is(err, ErrImageDamaged) {
		return nil, fmt.Errorf("cfs: layer %s: %w; remove the layer (its image) and pull it again", id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cfs: layer %s: %w", id, err)
	}
	return t, nil
}

// readBase reads the remapped layer id's base image, checked.
func (c *imageCache) readBase(id string) (*tree.Tree, error) {
	t, err := c.read(c.layers.baseImage(id))
	if errors.Is(err, ErrImageDamaged) {
		return nil, fmt.Errorf("cfs: layer %s: base %w; remove the layer and create it again", id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cfs: layer %s: base image: %w", id, err)
	}
	return t, nil
}

// flatTree returns the merged tree of the sealed layer id and its chain,
// writing nothing: the layer's cached flattened image, else the nearest
// ancestor's with the diff images of the layers above it merged on
// (from the empty tree where no ancestor has one). A remapped layer
// (layerMeta.Base) ends the chain: its base image is the tree below its
// diff. A layer of the chain that is not sealed gives errUnsealed.
func (c *imageCache) flatTree(ctx context.Context, id string) (*tree.Tree, error) {
	var above []string // layers with no cached image, top first
	base := tree.New()
	for cur := id; cur != ""; {
		if t, err := c.read(c.path(cur)); err == nil {
			base = t
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, flatImageError(cur, err)
		}
		if len(above) > maxChainDepth {
			return nil, fmt.Errorf("cfs: layer %s: chain deeper than %d layers (damaged parent links?)", id, maxChainDepth)
		}
		m, err := c.layers.readMeta(cur)
		if err != nil {
			return nil, err
		}
		if !m.Sealed {
			return nil, &errUnsealed{id: cur}
		}
		above = append(above, cur)
		if m.Base {
			// A remapped layer's diff applies to its base image, not
			// to its parent chain.
			if base, err = c.readBase(cur); err != nil {
				return nil, err
			}
			break
		}
		cur = m.Parent
	}
	for i := len(above) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		diff, err := c.readDiff(above[i])
		if err != nil {
			return nil, err
		}
		if err := layers.Merge(base, diff); err != nil {
			return nil, fmt.Errorf("cfs: flatten %s: %w", above[i], err)
		}
	}
	if len(above) > 0 {
		layers.FixLinks(base)
	}
	return base, nil
}

// maxChainDepth bounds a layer chain (c/storage's overlay allows 500
// layers; far more than any image has).
const maxChainDepth = 4096

// ensure writes the flattened image of the sealed layer id unless it is
// cached: the one image a mount of id needs, none for the layers below.
// Images are written to a temporary name and renamed, and the writer is
// deterministic, so concurrent builders agree. A cached image is checked
// before its first mount in this open store, and refused if damaged.
func (c *imageCache) ensure(ctx context.Context, id string) error {
	switch err := c.checkCached(c.path(id)); {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
	case c.mode != dedup.VerityRequire && errors.Is(err, ErrImageDamaged):
		// Without verity=require the cache is written without syncs
		// (see writeFlat): a crash can leave an image torn. It is only
		// a cache of the verified diff images: build it again.
		if _, err := c.drop(id); err != nil {
			return flatImageError(id, err)
		}
	default:
		return flatImageError(id, err)
	}
	if ok, err := c.linkDiff(id); ok || err != nil {
		return err
	}
	flat, err := c.flatTree(ctx, id)
	if err != nil {
		return err
	}
	err = c.writeFlat(id, flat)
	if err != nil && c.mode == dedup.VerityAuto && errors.Is(err, fsverity.ErrNotSupported) {
		err = writeImageWith(c.path(id), flat, imageWrite{})
	}
	if err != nil {
		return fmt.Errorf("cfs: flatten %s: %w", id, err)
	}
	c.checks.trust(c.path(id))
	return nil
}

// linkDiff makes the flattened image of a one-layer chain whose diff
// image is already flat (layerMeta.Flat) a hard link to that image, and
// its digest file to the diff's. It reports false, and the caller writes
// the image, where the layer is not such a layer, is another store's,
// or the link fails (another file system, say).
func (c *imageCache) linkDiff(id string) (bool, error) {
	if c.layers.readOnly(id) {
		return false, nil
	}
	m, err := c.layers.readMeta(id)
	if err != nil {
		return false, err
	}
	if !m.Sealed || !m.Flat || m.Parent != "" || m.Base {
		return false, nil
	}
	diff, image := c.layers.diffImage(id), c.path(id)
	// The diff image is checked as flatTree checks what it reads.
	if err := c.checks.verify(diff); err != nil {
		return false, fmt.Errorf("cfs: layer %s: %w; remove the layer (its image) and pull it again", id, err)
	}
	// A temporary name starting with "." (removeTemps), the digest's
	// first: an image is never in place without its digest.
	tmp := filepath.Join(c.dir, fmt.Sprintf(".link-%s-%d", id, os.Getpid()))
	defer os.Remove(tmp)
	defer os.Remove(tmp + digestSuffix)
	if os.Link(diff+digestSuffix, tmp+digestSuffix) != nil || os.Link(diff, tmp) != nil {
		return false, nil
	}
	if err := os.Rename(tmp+digestSuffix, image+digestSuffix); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, image); err != nil {
		return false, err
	}
	// Linking changed the inode's ctime: the check above still holds.
	c.checks.trust(diff)
	c.checks.trust(image)
	if c.verity {
		return true, c.checkCached(image) // enables fs-verity on the inode
	}
	return true, nil
}

// writeBase writes t as a remapped layer's base image at path: durably
// (it is the layer's content, not a cache) and, as it is mounted, with
// fs-verity where flattened images get it.
func (c *imageCache) writeBase(path string, t *tree.Tree) error {
	err := writeImageWith(path, t, imageWrite{verity: c.verity, durable: true})
	if err != nil && c.mode == dedup.VerityAuto && errors.Is(err, fsverity.ErrNotSupported) {
		err = writeImage(path, t)
	}
	if err != nil {
		return err
	}
	c.checks.trust(path)
	return nil
}

// writeFlat writes the flattened image of id. With verity=require it is
// durable and gets fs-verity, so that a damaged image is refused, never
// rebuilt over; otherwise it is a cache written without syncs (ensure
// rebuilds one a crash tore), which saves a first mount two fsyncs.
func (c *imageCache) writeFlat(id string, flat *tree.Tree) error {
	if c.mode == dedup.VerityRequire {
		return writeImageWith(c.path(id), flat, imageWrite{verity: true, durable: true})
	}
	return writeImageWith(c.path(id), flat, imageWrite{verity: c.verity})
}

// flatImageError names the layer whose flattened image failed.
func flatImageError(id string, err error) error {
	if errors.Is(err, ErrImageDamaged) {
		return fmt.Errorf("cfs: layer %s: flattened %w; it is a cache: `cfs-storage fsck --repair` removes it and the next mount rebuilds it", id, err)
	}
	return fmt.Errorf("cfs: layer %s: flattened image: %w", id, err)
}

// checkCached checks the cached flattened image at path before a mount.
// Without fs-verity it is the user-space check, once per file in this
// open store. With fs-verity the kernel's measurement must be the
// recorded digest (cheap: the kernel checks every block as it is read);
// an image that has no fs-verity yet (written before the store had it)
// is checked in user space, then gets it. The mount itself measures the
// file it mounts again (open).
func (c *imageCache) checkCached(path string) error {
	if !c.verity {
		return c.checks.verify(path)
	}
	switch err := measureImage(path); {
	case err == nil:
		return nil
	case c.mode == dedup.VerityAuto && errors.Is(err, fsverity.ErrNotSupported):
		// auto, images on a file system without fs-verity (the objects
		// have it): as without fs-verity.
		return c.checks.verify(path)
	case !errors.Is(err, fsverity.ErrNotEnabled):
		return err
	}
	if err := c.checks.verify(path); err != nil {
		return err
	}
	for try := 0; ; try++ {
		err := enableFileVerity(path)
		switch {
		case err == nil:
			return measureImage(path)
		case c.mode == dedup.VerityAuto && errors.Is(err, fsverity.ErrNotSupported):
			return nil
		case errors.Is(err, unix.EBUSY) && try < 100:
			// Another process is enabling it right now.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return fmt.Errorf("image %s: %w", path, err)
	}
}

// open makes the detached EROFS mount of a flattened image. With
// fs-verity on images the file is opened first, the kernel's measurement
// of it compared with the recorded digest, and the mount made from that
// open file (/proc/self/fd/N): what was measured is what is mounted.
func (c *imageCache) open(image string) (int, error) {
	if !c.verity {
		return openErofs(image)
	}
	f, err := os.Open(image)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	if err := matchMeasured(f, image); err != nil {
		// auto: an image on a file system without fs-verity was checked
		// in user space (checkCached).
		if c.mode != dedup.VerityAuto || !errors.Is(err, fsverity.ErrNotSupported) {
			return -1, err
		}
	}
	fd, err := openErofs("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return -1, fmt.Errorf("image %s: %w", image, err)
	}
	return fd, nil
}

// list lists the cached flattened images: the ID of the layer whose
// chain each flattens, with the bytes it takes (image and digest file;
// none for one linked to its diff image).
func (c *imageCache) list() (map[string]int64, error) {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("cfs: list flattened images: %w", err)
	}
	out := map[string]int64{}
	for _, e := range entries {
		name := e.Name()
		id, _ := strings.CutSuffix(strings.TrimSuffix(name, digestSuffix), ".cfs")
		if strings.HasPrefix(name, ".") || id == name {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		// A link to the layer's diff image (linkDiff) takes no bytes of
		// its own, but is listed.
		n := out[id]
		if st, ok := info.Sys().(*syscall.Stat_t); !ok || st.Nlink == 1 {
			n += info.Size()
		}
		out[id] = n
	}
	return out, nil
}

// drop removes layer id's cached flattened image and reports whether
// there was one. A mount holds its image open (the detached EROFS
// mount), so removing the file disturbs no mount.
func (c *imageCache) drop(id string) (bool, error) {
	removed := false
	for _, p := range c.files(id) {
		err := os.Remove(p)
		if err == nil {
			removed = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("cfs: drop flattened image of %s: %w", id, err)
		}
	}
	return removed, nil
}

// dropChainsWith removes the cached flattened images of id and of every
// layer whose chain holds id, durably.
func (c *imageCache) dropChainsWith(id string) error {
	parent, err := c.layers.parents()
	if err != nil {
		return err
	}
	for l := range parent {
		// At most one step per layer: damaged metadata cannot loop.
		for p, steps := l, 0; p != "" && steps <= len(parent); p, steps = parent[p], steps+1 {
			if p != id {
				continue
			}
			if _, err := c.drop(l); err != nil {
				return err
			}
			break
		}
	}
	if err := atomicfile.SyncDir(c.dir); err != nil {
		return fmt.Errorf("drop flattened images: %w", err)
	}
	return nil
}

// removeTemps removes images left half-written by interrupted work.
func (c *imageCache) removeTemps() error {
	names, err := readDirNames(c.dir)
	if err != nil {
		return fmt.Errorf("cfs: recover: %w", err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			os.RemoveAll(filepath.Join(c.dir, n))
		}
	}
	return nil
}

// orphans reports (and with repair removes) flattened images of layers
// not known.
func (c *imageCache) orphans(known func(id string) bool, repair bool) []ImageProblem {
	entries, _ := os.ReadDir(c.dir)
	var problems []ImageProblem
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".cfs")
		if !ok || strings.HasPrefix(id, ".") || known(id) {
			continue
		}
		p := ImageProblem{Path: c.path(id), Detail: "flattened image of a layer that no longer exists"}
		if repair {
			p.Repaired = os.Remove(p.Path) == nil
			os.Remove(p.Path + digestSuffix)
		}
		problems = append(problems, p)
	}
	return problems
}
