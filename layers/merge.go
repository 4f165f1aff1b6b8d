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
//
// A directory the layer has no entry of its own for (an implied parent,
// tree.ImpliedXattr: the tar holds "usr/bin/x" but no "usr/bin/") shows
// as c/storage's overlay driver shows it, with the mode, owner and
// xattrs of the directory extraction made for it (0755, 0:0, none),
// hiding the lower directory's; but its mtime is the lower directory's,
// where overlay shows the time the layer was extracted, which no image
// records. An implied directory with no directory below it gets the
// newest mtime of its entries. The result has no implied marks.
func Merge(lower, upper *tree.Tree) error {
	if isOpaque(upper.Root) {
		lower.Root.ClearEntries()
	}
	mergeDirMeta(lower.Root, upper.Root)
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
			mergeDirMeta(old, e.Node)
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

// mergeDirMeta gives the lower directory dst the metadata of the layer's
// directory src stacked on it; an implied src keeps dst's mtime.
func mergeDirMeta(dst, src *tree.Node) {
	mtime := dst.Mtime
	setDirMeta(dst, src)
	if src.IsImplied() {
		dst.Mtime = mtime
		dst.ClearImplied()
	}
}

// stripDir removes whiteouts and opaque markers below a directory that
// lands where nothing lies beneath it, and dates its implied directories
// by their newest entries.
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
	if n.IsImplied() {
		n.Mtime = newestEntry(n)
		n.ClearImplied()
	}
	for _, name := range whiteouts {
		n.Unlink(name)
	}
}

// newestEntry is the newest mtime of directory n's entries (whiteouts
// included: they record a change made in the directory), or n's own
// mtime when it has none.
func newestEntry(n *tree.Node) tree.Time {
	entries := n.Entries()
	if len(entries) == 0 {
		return n.Mtime
	}
	newest := entries[0].Node.Mtime
	for _, e := range entries[1:] {
		if newest.Before(e.Node.Mtime) {
			newest = e.Node.Mtime
		}
	}
	return newest
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

// IsFlat reports whether the layer tree t is its own flattened tree:
// whether Merge onto an empty tree, then FixLinks, would leave it as it
// is. That holds when it has no whiteouts, no opaque markers and no
// implied directories, and its hard links are already numbered as
// FixLinks numbers them. A base layer's image is then also the image of
// its one-layer chain.
func IsFlat(t *tree.Tree) bool {
	if isOpaque(t.Root) || t.Root.IsImplied() {
		return false
	}
	count := map[*tree.Node]uint32{}
	var walk func(dir *tree.Node) bool
	walk = func(dir *tree.Node) bool {
		for _, e := range dir.Entries() {
			n := e.Node
			if n.IsDir() {
				if isOpaque(n) || n.IsImplied() || !walk(n) {
					return false
				}
				continue
			}
			if n.IsWhiteout() {
				return false
			}
			count[n]++
			if e.HardLink != (count[n] > 1) {
				return false
			}
		}
		return true
	}
	if !walk(t.Root) {
		return false
	}
	for n, c := range count {
		if n.Nlink != c {
			return false
		}
	}
	return true
}
