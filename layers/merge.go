package layers

import (
	"fmt"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Merge applies the layer tree upper onto lower, in place, as overlayfs
// would show upper stacked on lower: whiteouts remove lower entries,
// opaque directories hide everything below them, a directory over a
// directory merges, anything else replaces. Nodes of upper are shared into
// lower, not copied, so upper must not be used afterwards. The result has
// no whiteouts and no opaque markers; call FixLinks once after the last
// Merge.
func Merge(lower, upper *tree.Tree) error {
	if isOpaque(upper.Root) {
		lower.Root.ClearEntries()
	}
	setDirMeta(lower.Root, upper.Root)
	lower.Root.RemoveXattr(OpaqueXattr)
	return mergeDir(lower.Root, upper.Root, "/")
}

func mergeDir(lower, upper *tree.Node, at string) error {
	for _, e := range upper.Entries() {
		p := at + e.Name
		old := lower.Child(e.Name)
		switch {
		case e.Node.IsWhiteout():
			lower.Unlink(e.Name)
		case e.Node.IsDir() && old != nil && old.IsDir() && !isOpaque(e.Node):
			setDirMeta(old, e.Node)
			if err := mergeDir(old, e.Node, p+"/"); err != nil {
				return err
			}
		default:
			if e.Node.IsDir() {
				stripDir(e.Node)
			}
			if err := lower.Put(e); err != nil {
				return fmt.Errorf("layers: merge %s: %w", p, err)
			}
		}
	}
	return nil
}

func isOpaque(n *tree.Node) bool {
	v, ok := n.Xattr(OpaqueXattr)
	return ok && string(v) == "y"
}

// stripDir removes whiteouts and opaque markers below a directory that
// lands where nothing lies beneath it.
func stripDir(n *tree.Node) {
	n.RemoveXattr(OpaqueXattr)
	var whiteouts []string
	for _, e := range n.Entries() {
		switch {
		case e.Node.IsWhiteout():
			whiteouts = append(whiteouts, e.Name)
		case e.Node.IsDir() && !e.HardLink:
			stripDir(e.Node)
		}
	}
	for _, name := range whiteouts {
		n.Unlink(name)
	}
}

// FixLinks makes the hard links of t consistent after entries were
// replaced or removed: for every non-directory node the first entry in walk
// order becomes its primary (HardLink false), the others secondary, and
// Nlink is set to the number of entries. Directory link counts are left to
// the writers.
func FixLinks(t *tree.Tree) {
	count := map[*tree.Node]uint32{}
	var fix func(dir *tree.Node)
	fix = func(dir *tree.Node) {
		for _, e := range dir.Entries() {
			if e.Node.IsDir() {
				fix(e.Node)
				continue
			}
			count[e.Node]++
			secondary := count[e.Node] > 1
			if e.HardLink != secondary {
				e.HardLink = secondary
				_ = dir.Put(e) // same name in the same directory: cannot fail
			}
		}
	}
	fix(t.Root)
	for n, c := range count {
		n.Nlink = c
	}
}
