package scenario

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
)

type inodeKey struct{ dev, ino uint64 }

// usage sums st_blocks×512 over every inode under the roots, counting
// each (dev, inode) once.
type usage struct {
	seen  map[inodeKey]bool
	bytes int64
}

func (u *usage) walk(root string) error {
	if u.seen == nil {
		u.seen = map[inodeKey]bool{}
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed while walking (a mount point)
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		k := inodeKey{st.Dev, st.Ino}
		if !u.seen[k] {
			u.seen[k] = true
			u.bytes += st.Blocks * 512
		}
		return nil
	})
}

// disk measures the bytes on disk of the host repository and the
// store together, and their ratio to the corpus's lower bound.
func (r *runner) disk(ctx context.Context, bs *benchStore) error {
	if r.bound == nil {
		r.logf("[disk] computing the lower bound (hashing host objects and image layers)")
		b, err := computeLowerBound(r.cfg.Corpus)
		if err != nil {
			return fmt.Errorf("lower bound: %w", err)
		}
		r.bound = b
		r.logf("[disk] lower bound: %s", fmtBytes(b.total()))
	}
	if err := syncfs(bs.store.GraphRoot()); err != nil {
		return err
	}
	var u usage
	if err := u.walk(r.cfg.Corpus.Path(r.cfg.Corpus.HostRepo)); err != nil {
		return err
	}
	host := u.bytes
	if err := u.walk(bs.store.GraphRoot()); err != nil {
		return err
	}
	r.add("disk", bs.label, "host + images", float64(u.bytes), "bytes", true)
	r.add("disk", bs.label, "images beyond the host", float64(u.bytes-host), "bytes", false)
	r.add("disk", bs.label, "÷ lower bound", float64(u.bytes)/float64(r.bound.total()), "ratio", false)
	r.logf("[disk] %s: host %s + store %s = %s (%.3f× the lower bound)", bs.label, fmtBytes(host), fmtBytes(u.bytes-host),
		fmtBytes(u.bytes), float64(u.bytes)/float64(r.bound.total()))
	if strings.HasPrefix(bs.label, "cfs") {
		r.df(ctx, bs, bs.opts)
	}
	return nil
}

// lowerBound is what host and images need at least: each distinct file
// content once, plus metadata.
type lowerBound struct {
	contents     int   // distinct regular-file contents (by sha256)
	contentBytes int64 // their sizes rounded up to 4 KiB blocks (≤ 64 bytes: inline, at their size)
	hostMeta     int64 // the host repo's non-content files (commit, dirtree, dirmeta objects, config, refs) on disk
	entries      int   // entries of the images' flattened trees, summed
}

const (
	inodeBytes = 256 // per distinct content
	entryBytes = 64  // per entry of an image's flattened tree
	inlineMax  = 64  // contents this small live in metadata
)

func (b *lowerBound) total() int64 {
	return b.contentBytes + int64(b.contents)*inodeBytes + b.hostMeta + int64(b.entries)*entryBytes
}

func (b *lowerBound) describe() string {
	return fmt.Sprintf("lower bound (%s): %d distinct contents of host and images (by sha256) once, in 4 KiB blocks (≤ %d bytes: at their size) = %s, "+
		"+ a %d-byte inode each, + the host repo's own metadata objects as stored (%s), + %d bytes per entry of each image's flattened tree (%d entries).",
		fmtBytes(b.total()), b.contents, inlineMax, fmtBytes(b.contentBytes), inodeBytes, fmtBytes(b.hostMeta), entryBytes, b.entries)
}

func (b *lowerBound) addContent(seen map[[32]byte]bool, sum [32]byte, size int64) {
	if seen[sum] {
		return
	}
	seen[sum] = true
	b.contents++
	if size <= inlineMax {
		b.contentBytes += size
	} else {
		b.contentBytes += (size + 4095) / 4096 * 4096
	}
}

func computeLowerBound(c *corpus.Corpus) (*lowerBound, error) {
	b := &lowerBound{}
	seen := map[[32]byte]bool{}
	repo := c.Path(c.HostRepo)
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".file") {
			sum, err := corpus.HashFile(p)
			if err != nil {
				return err
			}
			b.addContent(seen, sum, info.Size())
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			b.hostMeta += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host repo: %w", err)
	}
	layers := map[string][]string{} // layer digest → entry names, in order
	for _, img := range c.Images {
		blobs, err := imageLayers(c.Path(c.Layout), img.Name)
		if err != nil {
			return nil, err
		}
		tree := map[string]bool{}
		for _, blob := range blobs {
			names, ok := layers[blob]
			if !ok {
				if names, err = scanLayer(blob, b, seen); err != nil {
					return nil, err
				}
				layers[blob] = names
			}
			applyNames(tree, names)
		}
		b.entries += len(tree)
	}
	return b, nil
}

// imageLayers returns the paths of an image's layer blobs in an OCI
// layout, bottom first.
func imageLayers(dir, tag string) ([]string, error) {
	var idx imgspec.Index
	if err := readJSON(filepath.Join(dir, imgspec.ImageIndexFile), &idx); err != nil {
		return nil, err
	}
	for _, m := range idx.Manifests {
		if m.Annotations[imgspec.AnnotationRefName] != tag {
			continue
		}
		var man imgspec.Manifest
		if err := readJSON(filepath.Join(dir, "blobs", m.Digest.Algorithm().String(), m.Digest.Encoded()), &man); err != nil {
			return nil, err
		}
		var out []string
		for _, l := range man.Layers {
			out = append(out, filepath.Join(dir, "blobs", l.Digest.Algorithm().String(), l.Digest.Encoded()))
		}
		return out, nil
	}
	return nil, fmt.Errorf("oci layout %s: no image tagged %s", dir, tag)
}

func readJSON(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// scanLayer hashes a gzip layer's regular files into the bound and
// returns its entry names.
func scanLayer(blob string, b *lowerBound, seen map[[32]byte]bool) ([]string, error) {
	f, err := os.Open(blob)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", blob, err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", blob, err)
		}
		names = append(names, strings.TrimSuffix(path.Clean(hdr.Name), "/"))
		if hdr.Typeflag != tar.TypeReg || strings.HasPrefix(path.Base(hdr.Name), ".wh.") {
			continue
		}
		h := sha256.New()
		if _, err := io.Copy(h, tr); err != nil {
			return nil, fmt.Errorf("layer %s: %s: %w", blob, hdr.Name, err)
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		b.addContent(seen, sum, hdr.Size)
	}
}

// applyNames applies a layer's entry names (whiteouts included) to a
// flattened tree.
func applyNames(tree map[string]bool, names []string) {
	for _, n := range names {
		dir, base := path.Split(n)
		if !strings.HasPrefix(base, ".wh.") {
			tree[n] = true
			continue
		}
		prefix := dir
		if base != ".wh..wh..opq" {
			victim := dir + strings.TrimPrefix(base, ".wh.")
			delete(tree, victim)
			prefix = victim + "/"
		}
		for k := range tree {
			if strings.HasPrefix(k, prefix) {
				delete(tree, k)
			}
		}
	}
}
