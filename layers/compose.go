package layers

import (
	"fmt"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Compose applies the layer tree upper onto the layer tree lower, in
// place, so that lower becomes one layer holding the changes of both:
// stacked on any base, the result shows what lower then upper would.
// Unlike Merge it keeps whiteouts and opaque markers, since what they
// hide lies below lower. A directory of upper that takes the place of a
// file or whiteout of lower becomes opaque: lower's entry hid whatever
// lies below at that name, and the directory must go on hiding it.
// Nodes of upper are shared into lower, so upper must not be used
// afterwards; call FixLinks once after.
func Compose(lower, upper *tree.Tree) error {
	if isOpaque(upper.Root) {
		lower.Root.ClearEntries()
		lower.Root.SetXattr(OpaqueXattr, []byte("y"))
	}
	setDirMeta(lower.Root, upper.Root)
	return composeDir(lower.Root, upper.Root, "/")
}

func composeDir(lower, upper *tree.Node, at string) error {
	for _, e := range upper.Entries() {
		p := at + e.Name
		old := lower.Child(e.Name)
		if e.Node.IsDir() && old != nil && old.IsDir() && !isOpaque(e.Node) {
			composeDirMeta(old, e.Node) // keeps old's opaque marker
			if err := composeDir(old, e.Node, p+"/"); err != nil {
				return err
			}
			continue
		}
		if e.Node.IsDir() && old != nil && !old.IsDir() && !isOpaque(e.Node) {
			e.Node.SetXattr(OpaqueXattr, []byte("y"))
			e.Node.SortXattrs()
		}
		if err := lower.Put(e); err != nil {
			return fmt.Errorf("layers: compose %s: %w", p, err)
		}
	}
	return nil
}

// composeDirMeta gives lower's directory dst the metadata of upper's
// directory src. An implied src (tree.ImpliedXattr) over a directory
// of lower's own shows as Merge would show it (src's mode, owner and
// xattrs, dst's mtime), and dst stays a directory of its own.
func composeDirMeta(dst, src *tree.Node) {
	if src.IsImplied() && !dst.IsImplied() {
		mergeDirMeta(dst, src)
		return
	}
	setDirMeta(dst, src)
}
