package hostlink

import (
	"context"
	"fmt"
	"path"
)

// entryType is the kind of a path in a commit.
type entryType int

// The entry types.
const (
	typeDir entryType = iota
	typeRegular
	typeSymlink
)

// String returns "dir", "regular" or "symlink".
func (t entryType) String() string {
	switch t {
	case typeDir:
		return "dir"
	case typeRegular:
		return "regular"
	case typeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("EntryType(%d)", int(t))
}

// entry is one path of a commit as walk visits it.
type entry struct {
	// Path is absolute within the commit: "/" for the root, "/usr/bin/sh".
	Path string
	Type entryType
	// Checksum is the file object for files and symlinks, the dirtree
	// object for directories.
	Checksum checksum
	// DirMeta is the dirmeta object of a directory (zero otherwise).
	DirMeta checksum
	// Info is the logical metadata: the file object's for files and
	// symlinks, the dirmeta's for directories (Size 0, no Target).
	Info *fileInfo
}

// walkFunc is called by walk for every path. Returning an error stops the
// walk and walk returns that error.
type walkFunc func(e *entry) error

// walk visits every path of a commit, depth first in the order `ostree ls
// -R` lists them: a directory, its files and symlinks by name, then its
// subdirectories by name. File objects' metadata is read (stat and
// xattrs; no content). A missing or damaged object stops the walk with
// errMissingObject or errCorrupt.
func (r *Repo) walk(ctx context.Context, commit checksum, fn walkFunc) error {
	cm, err := r.readCommit(commit)
	if err != nil {
		return err
	}
	return r.walkDir(ctx, "/", cm.RootTree, cm.RootMeta, fn)
}

func (r *Repo) walkDir(ctx context.Context, p string, tree, meta checksum, fn walkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dm, err := r.readDirMeta(meta)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	info := &fileInfo{UID: dm.UID, GID: dm.GID, Mode: dm.Mode, Xattrs: dm.Xattrs}
	if err := fn(&entry{Path: p, Type: typeDir, Checksum: tree, DirMeta: meta, Info: info}); err != nil {
		return err
	}
	dt, err := r.readDirTree(tree)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	for _, f := range dt.Files {
		fp := path.Join(p, f.Name)
		fi, err := r.readFileInfo(f.Checksum)
		if err != nil {
			return fmt.Errorf("%s: %w", fp, err)
		}
		typ := typeRegular
		if fi.IsSymlink() {
			typ = typeSymlink
		}
		if err := fn(&entry{Path: fp, Type: typ, Checksum: f.Checksum, Info: fi}); err != nil {
			return err
		}
	}
	for _, d := range dt.Dirs {
		if err := r.walkDir(ctx, path.Join(p, d.Name), d.Tree, d.Meta, fn); err != nil {
			return err
		}
	}
	return nil
}

// fileObjects returns the set of file objects reachable from the given
// commits, reading only commit and dirtree objects (no file object is
// touched, and dirtrees shared between commits are read once). Use it
// with refs or deployments to restrict an Index to what the host
// actually uses.
func (r *Repo) fileObjects(ctx context.Context, commits []checksum) (map[checksum]struct{}, error) {
	files := map[checksum]struct{}{}
	seen := map[checksum]struct{}{}
	var visit func(tree checksum) error
	visit = func(tree checksum) error {
		if _, ok := seen[tree]; ok {
			return nil
		}
		seen[tree] = struct{}{}
		if err := ctx.Err(); err != nil {
			return err
		}
		dt, err := r.readDirTree(tree)
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			files[f.Checksum] = struct{}{}
		}
		for _, d := range dt.Dirs {
			if err := visit(d.Tree); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range commits {
		cm, err := r.readCommit(c)
		if err != nil {
			return nil, err
		}
		if err := visit(cm.RootTree); err != nil {
			return nil, fmt.Errorf("commit %s: %w", c, err)
		}
	}
	return files, nil
}
