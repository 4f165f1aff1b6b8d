package hostlink

import (
	"context"
	"fmt"
	"path"
)

// EntryType is the kind of a path in a commit.
type EntryType int

// Entry types.
const (
	TypeDir EntryType = iota
	TypeRegular
	TypeSymlink
)

// String returns "dir", "regular" or "symlink".
func (t EntryType) String() string {
	switch t {
	case TypeDir:
		return "dir"
	case TypeRegular:
		return "regular"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("EntryType(%d)", int(t))
}

// Entry is one path of a commit as Walk visits it.
type Entry struct {
	// Path is absolute within the commit: "/" for the root, "/usr/bin/sh".
	Path string
	Type EntryType
	// Checksum is the file object for files and symlinks, the dirtree
	// object for directories.
	Checksum Checksum
	// DirMeta is the dirmeta object of a directory (zero otherwise).
	DirMeta Checksum
	// Info is the logical metadata: the file object's for files and
	// symlinks, the dirmeta's for directories (Size 0, no Target).
	Info *FileInfo
}

// WalkFunc is called by Walk for every path. Returning an error stops the
// walk and Walk returns that error.
type WalkFunc func(e *Entry) error

// Walk visits every path of a commit, depth first in the order `ostree ls
// -R` lists them: a directory, its files and symlinks by name, then its
// subdirectories by name. File objects' metadata is read (stat and
// xattrs; no content). A missing or damaged object stops the walk with
// ErrMissingObject or ErrCorrupt.
func (r *Repo) Walk(ctx context.Context, commit Checksum, fn WalkFunc) error {
	cm, err := r.ReadCommit(commit)
	if err != nil {
		return err
	}
	return r.walkDir(ctx, "/", cm.RootTree, cm.RootMeta, fn)
}

func (r *Repo) walkDir(ctx context.Context, p string, tree, meta Checksum, fn WalkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dm, err := r.ReadDirMeta(meta)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	info := &FileInfo{UID: dm.UID, GID: dm.GID, Mode: dm.Mode, Xattrs: dm.Xattrs}
	if err := fn(&Entry{Path: p, Type: TypeDir, Checksum: tree, DirMeta: meta, Info: info}); err != nil {
		return err
	}
	dt, err := r.ReadDirTree(tree)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	for _, f := range dt.Files {
		fp := path.Join(p, f.Name)
		fi, err := r.ReadFileInfo(f.Checksum)
		if err != nil {
			return fmt.Errorf("%s: %w", fp, err)
		}
		typ := TypeRegular
		if fi.IsSymlink() {
			typ = TypeSymlink
		}
		if err := fn(&Entry{Path: fp, Type: typ, Checksum: f.Checksum, Info: fi}); err != nil {
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

// FileObjects returns the set of file objects reachable from the given
// commits, reading only commit and dirtree objects (no file object is
// touched, and dirtrees shared between commits are read once). Use it
// with Refs or Deployments to restrict an Index to what the host
// actually uses.
func (r *Repo) FileObjects(ctx context.Context, commits []Checksum) (map[Checksum]struct{}, error) {
	files := map[Checksum]struct{}{}
	seen := map[Checksum]struct{}{}
	var visit func(tree Checksum) error
	visit = func(tree Checksum) error {
		if _, ok := seen[tree]; ok {
			return nil
		}
		seen[tree] = struct{}{}
		if err := ctx.Err(); err != nil {
			return err
		}
		dt, err := r.ReadDirTree(tree)
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
		cm, err := r.ReadCommit(c)
		if err != nil {
			return nil, err
		}
		if err := visit(cm.RootTree); err != nil {
			return nil, fmt.Errorf("commit %s: %w", c, err)
		}
	}
	return files, nil
}
