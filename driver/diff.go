package driver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// diff writes layer id's own changes as a tar. parent must be the layer's
// parent: the diff of a layer is relative to its chain.
func (d *core) diff(ctx context.Context, id, parent string) (io.ReadCloser, error) {
	t, session, err := d.readableDiffTree(ctx, id, parent)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		err := layers.WriteTar(ctx, pw, t, d.openContent)
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
	session, err := d.objects.BeginIngest(ctx)
	if err != nil {
		return nil, nil, err
	}
	t, m, err := d.diffTree(ctx, id, ingestContents{in: session})
	if err == nil && parent != m.Parent {
		err = fmt.Errorf("cfs: diff of %s against %q: only its parent %q is supported", id, parent, m.Parent)
	}
	if err != nil {
		session.Abort()
		return nil, nil, err
	}
	return t, session, nil
}

// openContent opens the object holding an external file's content.
func (d *core) openContent(n *tree.Node) (io.ReadCloser, error) {
	if n.Digest == nil {
		return nil, fmt.Errorf("cfs: external file with no digest (payload %q)", n.Payload)
	}
	f, err := d.objects.Open(*n.Digest)
	if err != nil {
		return nil, fmt.Errorf("cfs: object %s: %w", n.Payload, err)
	}
	return f, nil
}

// changes lists what differs between the full trees of parent and id.
func (d *core) changes(ctx context.Context, id, parent string) ([]layers.Change, error) {
	old, err := d.fullTree(ctx, parent)
	if err != nil {
		return nil, err
	}
	cur, err := d.fullTree(ctx, id)
	if err != nil {
		return nil, err
	}
	return layers.Changes(old, cur), nil
}

// diffSize is the size of the contents layer id itself holds.
func (d *core) diffSize(ctx context.Context, id string) (int64, error) {
	t, _, err := d.diffTree(ctx, id, hashContents{})
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
	m, err := d.readMeta(id)
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
	return g.d.openContent(n)
}

// Close ends the getter's ingest session.
func (g *fileGetter) Close() error { return g.session.Abort() }

// createFromTemplate makes layer id on parent with the same content as
// layer template. The new layer is sealed: it shares the template's diff
// image when both have the same parent, else its diff is the template's
// whole tree over an opaque root.
func (d *core) createFromTemplate(ctx context.Context, id, template, parent string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := d.seal(ctx, template); err != nil {
		return err
	}
	tm, err := d.readMeta(template)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Join(d.home, "layers"), ".new-")
	if err != nil {
		return fmt.Errorf("cfs: create %s from %s: %w", id, template, err)
	}
	defer os.RemoveAll(tmp)
	img := filepath.Join(tmp, diffImageFile)
	if tm.Parent == parent {
		err = copyFile(d.diffImage(template)+digestSuffix, img+digestSuffix)
		if err == nil {
			err = copyFile(d.diffImage(template), img)
		}
	} else {
		var full *tree.Tree
		if full, err = d.flatTree(ctx, template); err == nil {
			full.Root.SetXattr(layers.OpaqueXattr, []byte("y"))
			err = writeImage(img, full)
		}
	}
	if err != nil {
		return fmt.Errorf("cfs: create %s from %s: %w", id, template, err)
	}
	refs, err := d.objects.Refs(template)
	if err == nil {
		err = d.objects.SetRefs(ctx, id, refs)
	}
	if err != nil {
		return fmt.Errorf("cfs: create %s from %s: object refs: %w", id, template, err)
	}
	if err := d.writeMeta(tmp, layerMeta{Parent: parent, Sealed: true}); err != nil {
		return err
	}
	if err := os.Rename(tmp, d.layerDir(id)); err != nil {
		d.objects.DropRefs(ctx, id)
		return fmt.Errorf("cfs: create %s from %s: %w", id, template, err)
	}
	return syncDir(filepath.Join(d.home, "layers"))
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
