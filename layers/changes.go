package layers

import (
	"bytes"
	"slices"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// ChangeKind says how a path changed between two trees.
type ChangeKind int

// The kinds of change, in containers/storage's order (archive.ChangeType).
const (
	ChangeModify ChangeKind = iota
	ChangeAdd
	ChangeDelete
)

// Change is one changed path ("/a/b").
type Change struct {
	Path string
	Kind ChangeKind
}

// Changes lists what changed from old to new, both full (merged) trees,
// with the rules container engines use: an added directory is reported
// with everything below it, a deleted one alone; a file is modified when
// its type, mode, owner, device, size, mtime, content or capabilities
// differ; a directory when its type, mode or owner differ, or when
// anything below it changed. The root is never reported.
func Changes(old, new *tree.Tree) []Change {
	var out []Change
	diffDir(old.Root, new.Root, "", &out)
	return out
}

func diffDir(old, new *tree.Node, at string, out *[]Change) {
	for _, e := range new.Entries() {
		p := at + "/" + e.Name
		prev := old.Child(e.Name)
		if prev == nil {
			addAll(e.Node, p, out)
			continue
		}
		if !e.Node.IsDir() || !prev.IsDir() {
			if modified(prev, e.Node) {
				*out = append(*out, Change{Path: p, Kind: ChangeModify})
			}
			if e.Node.IsDir() {
				addBelow(e.Node, p, out)
			}
			continue
		}
		mark := len(*out)
		diffDir(prev, e.Node, p, out)
		if len(*out) > mark || modified(prev, e.Node) {
			*out = slices.Insert(*out, mark, Change{Path: p, Kind: ChangeModify})
		}
	}
	for _, e := range old.Entries() {
		if new.Child(e.Name) == nil {
			*out = append(*out, Change{Path: at + "/" + e.Name, Kind: ChangeDelete})
		}
	}
}

func addAll(n *tree.Node, p string, out *[]Change) {
	*out = append(*out, Change{Path: p, Kind: ChangeAdd})
	if n.IsDir() {
		addBelow(n, p, out)
	}
}

func addBelow(dir *tree.Node, at string, out *[]Change) {
	for _, e := range dir.Entries() {
		addAll(e.Node, at+"/"+e.Name, out)
	}
}

// modified compares two nodes at the same path.
func modified(a, b *tree.Node) bool {
	if a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || a.Rdev != b.Rdev {
		return true
	}
	capA, _ := a.Xattr("security.capability")
	capB, _ := b.Xattr("security.capability")
	if !bytes.Equal(capA, capB) {
		return true
	}
	if a.IsDir() {
		return false // directory size and mtime say nothing useful
	}
	return a.Size != b.Size || a.Mtime != b.Mtime || a.Target != b.Target ||
		a.Payload != b.Payload || !bytes.Equal(a.Content, b.Content)
}

// DiffSize is the size of a layer tree's regular file contents, each
// node counted once however many links it has.
func DiffSize(t *tree.Tree) int64 {
	seen := map[*tree.Node]bool{}
	var size int64
	_ = t.Walk(func(_ string, d tree.Dirent) error {
		if d.Node.IsRegular() && !seen[d.Node] {
			seen[d.Node] = true
			size += int64(d.Node.Size)
		}
		return nil
	})
	return size
}
