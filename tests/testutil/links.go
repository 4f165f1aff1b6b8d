package testutil

import "github.com/cfs-storage/cfs-storage/layers/tree"

// PrimariesFirst reports whether every node of tr is first met, in
// depth-first name order, at its primary entry (not a hard link). A dump
// printed from an image makes the first entry met the primary, so a tree
// for which this is false moves its inodes when rebuilt from its dump.
func PrimariesFirst(tr *tree.Tree) bool {
	seen := map[*tree.Node]bool{}
	ok := true
	_ = tr.Walk(func(_ string, d tree.Dirent) error {
		if !seen[d.Node] && d.HardLink {
			ok = false
		}
		seen[d.Node] = true
		return nil
	})
	return ok
}
