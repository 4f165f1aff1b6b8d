package driver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// diff writes layer id's own changes as a tar, owners mapped with
// toContainer (nil: as stored). parent must be the layer's parent: the
// diff of a layer is relative to its chain (or its base, for a remapped
// layer: a remap is not a change of the layer's).
func (d *core) diff(ctx context.Context, id, parent string, toContainer layers.IDMapper) (io.ReadCloser, error) {
	t, session, err := d.readableDiffTree(ctx, id, parent)
	if err != nil {
		return nil, err
	}
	if err := mapTree(t, toContainer); err != nil {
		session.Abort()
		return nil, fmt.Errorf("cfs: diff of %s: %w", id, err)
	}
	pr, pw := io.Pipe()
	go func() {
		err := layers.WriteTar(ctx, pw, t, d.contents.open)
		session.Abort()
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// readableDiffTree returns layer id's own tree with every content it uses
// in the object store. A writable layer's new contents are stored for the
// occasion, pinned by the returned session until its Abort (afterwards
// they are collectable unless a layer uses them).
func (d *core) readableDiffTree(ctx context.Context, id, parent string) (*tree.Tree, *dedup.Ingest, error) {
	session, contents, err := d.contents.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	t, m, err := d.diffTree(ctx, id, contents)
	if err == nil && parent != m.Parent {
		err = fmt.Errorf("cfs: diff of %s against %q: only its parent %q is supported", id, parent, m.Parent)
	}
	if err != nil {
		session.Abort()
		return nil, nil, err
	}
	return t, session, nil
}

// changes lists what differs between the full trees of parent and id,
// owners compared in container IDs: parent's mapped with parentIDs, id's
// with idIDs (nil: as stored). Against its own parent, a layer's tree is
// the parent's with the layer's own diff merged on: what the layer
// changed, not what a remap of its base (UpdateLayerIDMap) or an
// idmapped mount's host IDs (a shifted container writes host IDs to its
// upper directory, over lower layers it sees mapped) make look different.
func (d *core) changes(ctx context.Context, id, parent string, idIDs, parentIDs layers.IDMapper) ([]layers.Change, error) {
	old, err := d.fullTree(ctx, parent)
	if err != nil {
		return nil, err
	}
	if err := mapTree(old, parentIDs); err != nil {
		return nil, err
	}
	m, err := d.layers.readMeta(id)
	if err != nil {
		return nil, err
	}
	var cur *tree.Tree
	if parent == m.Parent {
		own, _, err := d.diffTree(ctx, id, layers.HashContents{})
		if err != nil {
			return nil, err
		}
		if err := mapTree(own, idIDs); err != nil {
			return nil, err
		}
		cur = old.Clone()
		if err := layers.Merge(cur, own); err != nil {
			return nil, err
		}
		layers.FixLinks(cur)
	} else {
		if cur, err = d.fullTree(ctx, id); err != nil {
			return nil, err
		}
		if err := mapTree(cur, idIDs); err != nil {
			return nil, err
		}
	}
	return layers.Changes(old, cur), nil
}

// diffSize is the size of the contents layer id itself holds.
func (d *core) diffSize(ctx context.Context, id string) (int64, error) {
	t, _, err := d.diffTree(ctx, id, layers.HashContents{})
	if err != nil {
		return 0, err
	}
	return layers.DiffSize(t), nil
}

// fileGetter serves a layer's file contents by path, for tar-split to
// reassemble the layer's original tar.
type fileGetter struct {
	d       *core
	t       *tree.Tree
	session *dedup.Ingest
}

func (d *core) fileGetter(ctx context.Context, id string) (*fileGetter, error) {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return nil, err
	}
	t, session, err := d.readableDiffTree(ctx, id, m.Parent)
	if err != nil {
		return nil, err
	}
	return &fileGetter{d: d, t: t, session: session}, nil
}

// Get returns the content of the regular file at path in the layer.
func (g *fileGetter) Get(path string) (io.ReadCloser, error) {
	p, err := layers.CleanPath(path)
	if err != nil {
		return nil, fmt.Errorf("cfs: get %q: %w", path, err)
	}
	n, err := g.t.Lookup(p)
	if err != nil {
		return nil, fmt.Errorf("cfs: get %q: %w", path, err)
	}
	if !n.IsRegular() {
		return nil, fmt.Errorf("cfs: get %q: not a regular file", path)
	}
	if !n.IsExternal() {
		return io.NopCloser(bytes.NewReader(n.Content)), nil
	}
	return g.d.contents.open(n)
}

// Close ends the getter's ingest session.
func (g *fileGetter) Close() error { return g.session.Abort() }

// createFromTemplate makes layer id on parent with the same content as
// layer template. The new layer is sealed: it shares the template's diff
// image when both have the same parent, else its diff is the template's
// whole tree over an opaque root. Parent is sealed first, as create does.
func (d *core) createFromTemplate(ctx context.Context, id, template, parent string) error {
	if err := checkID(id); err != nil {
		return err
	}
	for _, l := range []string{template, parent} {
		if l == "" {
			continue
		}
		if err := d.seal(ctx, l); err != nil {
			return fmt.Errorf("cfs: create %s from %s: %w", id, template, err)
		}
	}
	tm, err := d.layers.readMeta(template)
	if err != nil {
		return err
	}
	if d.layers.exists(id) {
		return fmt.Errorf("cfs: layer %s already exists", id)
	}
	err = d.layers.build(id, func(dir string) error {
		meta := layerMeta{Parent: parent, Sealed: true}
		if tm.Parent == parent && d.layers.home(template) == ownLayer {
			// Same parent: the same images and refs (a remapped
			// template's diff applies to its base: the copy gets both).
			files := []string{diffImageFile}
			if tm.Base {
				files, meta.Base = append(files, baseImageFile), true
			}
			for _, f := range files {
				src, dst := filepath.Join(d.layers.path(template), f), filepath.Join(dir, f)
				if err := copyFile(src+digestSuffix, dst+digestSuffix); err != nil {
					return err
				}
				if err := copyFile(src, dst); err != nil {
					return err
				}
			}
			// The refs before the layer: a crash in between leaves refs
			// of a missing layer, which recovery drops.
			if err := d.contents.copyRefs(ctx, template, id); err != nil {
				return fmt.Errorf("object refs: %w", err)
			}
		} else {
			meta.Base = tm.Parent == parent && tm.Base
			if err := d.copyTree(ctx, id, template, tm.Parent == parent, dir); err != nil {
				return err
			}
		}
		return writeMetaIn(dir, meta)
	})
	if err != nil {
		d.contents.dropRefs(ctx, id)
		return err
	}
	return atomicfile.SyncDir(d.layers.dir)
}

// copyTree writes the images in the layer directory dir for layer id
// with template's content: its own diff (sameParent; with the base of a
// remapped template), else its whole tree over an opaque root. Every
// object the images use is registered as id's refs (imported from a
// read-only store where only that has it).
func (d *core) copyTree(ctx context.Context, id, template string, sameParent bool, dir string) error {
	var t, base *tree.Tree
	var err error
	if sameParent {
		t, err = d.images.readDiff(template)
		if m, merr := d.layers.readMeta(template); err == nil && merr == nil && m.Base {
			if base, err = d.images.readBase(template); err == nil {
				err = d.images.writeBase(filepath.Join(dir, baseImageFile), base)
			}
		}
	} else if t, err = d.flatTree(ctx, template); err == nil {
		t.Root.SetXattr(layers.OpaqueXattr, []byte("y"))
	}
	if err != nil {
		return err
	}
	_, err = d.contents.commit(ctx, id, func(layers.Contents) (*tree.Tree, error) { return t, nil }, func(t *tree.Tree) error {
		return writeImage(filepath.Join(dir, diffImageFile), t)
	}, base)
	return err
}

// copyFile hard-links src to dst (images are immutable), or copies it.
func copyFile(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// diffTree is a layer's own tree: its diff image once sealed, else what
// its upper directory holds over its parent chain.
func (d *core) diffTree(ctx context.Context, id string, contents layers.Contents) (*tree.Tree, layerMeta, error) {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return nil, m, err
	}
	if m.Sealed {
		t, err := d.images.readDiff(id)
		return t, m, err
	}
	lower, err := d.baseTree(ctx, id, m)
	if err != nil {
		return nil, m, err
	}
	t, err := layers.FromUpper(ctx, d.layers.upperDir(id), lower, contents, d.contents.ingestOptions(nil))
	if err != nil {
		return nil, m, fmt.Errorf("cfs: layer %s: %w", id, err)
	}
	return t, m, nil
}

// fullTree is everything a layer shows when mounted: its chain merged.
func (d *core) fullTree(ctx context.Context, id string) (*tree.Tree, error) {
	if id == "" {
		return tree.New(), nil
	}
	m, err := d.layers.readMeta(id)
	if err != nil {
		return nil, err
	}
	if m.Sealed {
		return d.flatTree(ctx, id)
	}
	diff, _, err := d.diffTree(ctx, id, layers.HashContents{})
	if err != nil {
		return nil, err
	}
	base, err := d.baseTree(ctx, id, m)
	if err != nil {
		return nil, err
	}
	if base == nil {
		base = tree.New()
	}
	if err := layers.Merge(base, diff); err != nil {
		return nil, err
	}
	layers.FixLinks(base)
	return base, nil
}
