package scenario

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
)

// entry is what the tree check compares of one path: its type and
// permission bits, owner, size (regular files) and target (symlinks).
type entry struct {
	typ      byte // tar type: '0' file, '5' dir, '2' symlink, '3'/'4' devices, '6' fifo
	mode     int64
	uid, gid int
	size     int64
	link     string
}

func (e entry) String() string {
	switch e.typ {
	case tar.TypeReg:
		return fmt.Sprintf("file %o %d:%d %d bytes", e.mode, e.uid, e.gid, e.size)
	case tar.TypeDir:
		return fmt.Sprintf("dir %o %d:%d", e.mode, e.uid, e.gid)
	case tar.TypeSymlink:
		return fmt.Sprintf("symlink %d:%d -> %s", e.uid, e.gid, e.link)
	default:
		return fmt.Sprintf("type %c %o %d:%d", e.typ, e.mode, e.uid, e.gid)
	}
}

// expectedTree is the tree an image's layers make (whiteouts and opaque
// markers applied, a later entry of another type replacing an earlier
// one and its subtree), by path relative to the root.
func expectedTree(layout, tag string) (map[string]entry, error) {
	blobs, err := imageLayers(layout, tag)
	if err != nil {
		return nil, err
	}
	tree := map[string]entry{}
	for _, blob := range blobs {
		if err := applyLayer(tree, blob); err != nil {
			return nil, err
		}
	}
	return tree, nil
}

// removeTree deletes p's children (and p itself with self) from tree.
func removeTree(tree map[string]entry, p string, self bool) {
	if self {
		delete(tree, p)
	}
	for k := range tree {
		if strings.HasPrefix(k, p+"/") {
			delete(tree, k)
		}
	}
}

func applyLayer(tree map[string]entry, blob string) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("layer %s: %w", blob, err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", blob, err)
		}
		p := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if p == "" {
			continue
		}
		dir, base := path.Split(p)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case base == ".wh..wh..opq":
			removeTree(tree, dir, false)
			continue
		case strings.HasPrefix(base, ".wh."):
			removeTree(tree, path.Join(dir, strings.TrimPrefix(base, ".wh.")), true)
			continue
		}
		e := entry{typ: hdr.Typeflag, mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			e.typ, e.size = tar.TypeReg, hdr.Size
		case tar.TypeLink:
			target, ok := tree[strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")]
			if !ok {
				return fmt.Errorf("layer %s: %s: hard link to missing %s", blob, p, hdr.Linkname)
			}
			e = target
		case tar.TypeSymlink:
			e.link, e.mode = hdr.Linkname, 0o777
		}
		if old, ok := tree[p]; ok && (old.typ != tar.TypeDir || e.typ != tar.TypeDir) {
			removeTree(tree, p, false) // a non-directory replaces a directory, or the reverse
		}
		tree[p] = e
	}
}

// actualTree lists the tree under root like expectedTree.
func actualTree(root string) (map[string]entry, error) {
	tree := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		e := entry{mode: int64(st.Mode & 0o7777), uid: int(st.Uid), gid: int(st.Gid)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.typ, e.size = tar.TypeReg, st.Size
		case unix.S_IFDIR:
			e.typ = tar.TypeDir
		case unix.S_IFLNK:
			e.typ, e.mode = tar.TypeSymlink, 0o777
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFCHR:
			e.typ = tar.TypeChar
		case unix.S_IFBLK:
			e.typ = tar.TypeBlock
		case unix.S_IFIFO:
			e.typ = tar.TypeFifo
		}
		tree[filepath.ToSlash(rel)] = e
		return nil
	})
	return tree, err
}

// treeDiff describes how got differs from want, at most max lines, and
// how many differences there are.
func treeDiff(want, got map[string]entry, max int) ([]string, int) {
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []string
	n := 0
	for _, p := range paths {
		w, inWant := want[p]
		g, inGot := got[p]
		var line string
		switch {
		case !inGot:
			line = fmt.Sprintf("/%s missing (the image has %s)", p, w)
		case !inWant:
			line = fmt.Sprintf("/%s is there (%s) but not in the image", p, g)
		case w != g:
			line = fmt.Sprintf("/%s is %s, the image has %s", p, g, w)
		default:
			continue
		}
		n++
		if len(out) < max {
			out = append(out, line)
		}
	}
	return out, n
}

// verifyTrees mounts a container of each image pulled into bs and
// compares its tree with the one the image's layers make. It returns an
// error naming the images whose trees differ, and how.
func (r *runner) verifyTrees(bs *benchStore) error {
	c := r.cfg.Corpus
	var errs []error
	for _, img := range c.Images {
		id, ok := bs.images[img.Name]
		if !ok {
			continue
		}
		want, err := r.expected(img)
		if err != nil {
			return err
		}
		got, err := containerTree(bs, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("image %s: tree check: %w", img.Name, err))
			continue
		}
		if lines, n := treeDiff(want, got, 3); n > 0 {
			errs = append(errs, fmt.Errorf("image %s (%d layers): the container's tree differs from the image's in %d paths: %s",
				img.Name, img.Layers, n, strings.Join(lines, "; ")))
		}
	}
	return errors.Join(errs...)
}

// expected returns (and caches) the tree of a corpus image.
func (r *runner) expected(img corpus.Image) (map[string]entry, error) {
	if t, ok := r.trees[img.Name]; ok {
		return t, nil
	}
	t, err := expectedTree(r.cfg.Corpus.Path(r.cfg.Corpus.Layout), img.Name)
	if err != nil {
		return nil, fmt.Errorf("tree of image %s: %w", img.Name, err)
	}
	if r.trees == nil {
		r.trees = map[string]map[string]entry{}
	}
	r.trees[img.Name] = t
	return t, nil
}

// containerTree mounts a container of image id, lists its tree and
// removes the container.
func containerTree(bs *benchStore, id string) (map[string]entry, error) {
	ctr, err := bs.store.CreateContainer("", nil, id, "", "", nil)
	if err != nil {
		return nil, err
	}
	defer bs.store.DeleteContainer(ctr.ID)
	mnt, err := bs.store.Mount(ctr.ID, "")
	if err != nil {
		return nil, err
	}
	defer bs.store.Unmount(ctr.ID, true)
	return actualTree(mnt)
}
