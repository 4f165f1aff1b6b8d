package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// contents keeps the file contents of every layer once: the
// content-addressed object store (<home>/objects), with the host
// repository's objects linked in where they hold the same content
// (hostShare). A sealed layer registers the objects its image uses as
// its refs; objects no layer refers to are collected.
//
// Read-only image stores' objects (<store>/cfs/objects) are read, never
// written: mounts use them as further data-only layers, and a layer of
// this store that uses one (a file of a read-only layer below it, kept
// by metadata-only copy-up) gets it imported (hard link, reflink or
// copy) when the layer is sealed, so that this store's refs cover it.
type contents struct {
	objects *dedup.Store
	host    *hostShare // nil without a host repository
	inline  int64      // the largest content kept inside an image
	ro      []string   // objects directories of read-only stores

	mu sync.Mutex
	// removed is set when a layer's refs were dropped or replaced: close
	// then collects the objects no layer uses any more.
	removed bool
}

// openContents opens (creating if needed) the object store under home.
func openContents(home string, opts Options) (*contents, error) {
	objects, err := dedup.Open(home, dedup.Options{Verity: opts.Verity})
	if err != nil {
		return nil, fmt.Errorf("cfs: open object store: %w", err)
	}
	c := &contents{objects: objects, host: newHostShare(home, opts), inline: opts.InlineThreshold}
	for _, store := range opts.ImageStores {
		c.ro = append(c.ro, filepath.Join(store, Name, "objects"))
	}
	return c, nil
}

// dataDirs are the object directories a mount uses as data-only
// layers: this store's, then the read-only stores'. Overlay follows a
// redirect into the first that has the object.
func (c *contents) dataDirs() []string {
	return append([]string{c.objects.ObjectsDir()}, c.ro...)
}

// roObject returns the path of object d in the first read-only store
// that has it.
func (c *contents) roObject(d dedup.Digest) (string, bool) {
	return findObject(c.ro, d)
}

// findObject returns the path of object d in the first of the objects
// directories dirs that has it.
func findObject(dirs []string, d dedup.Digest) (string, bool) {
	for _, dir := range dirs {
		p := filepath.Join(dir, dedup.ObjectPath(d))
		if _, err := os.Lstat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// ingestOptions are the options for building a layer tree: contents
// larger than the inline threshold go to the store, owners mapped with
// mapIDs (nil for none).
func (c *contents) ingestOptions(mapIDs layers.IDMapper) layers.IngestOptions {
	// Contents are stored on one worker per CPU while the tar goes on
	// being read (and decompressed, upstream).
	return layers.IngestOptions{InlineLimit: c.inline, MapIDs: mapIDs, Workers: runtime.GOMAXPROCS(0)}
}

// commit builds layer id's diff tree with build, storing its contents
// in one ingest session, has write store the tree (the layer's image),
// then registers the objects the tree and the trees also (nil ones
// skipped) use as id's refs. Until the refs are committed the session
// pins the objects against collection; a failure or crash before leaves
// them collectable.
func (c *contents) commit(ctx context.Context, id string, build func(layers.Contents) (*tree.Tree, error), write func(*tree.Tree) error, also ...*tree.Tree) (*tree.Tree, error) {
	in, err := c.objects.BeginIngest(ctx)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			in.Abort()
		}
	}()
	insertOpts, err := c.insertOptions(ctx)
	if err != nil {
		return nil, err
	}
	// Nothing looks layer contents up by plain SHA-256 (yet: zstd:chunked
	// pulls would); skipping it halves the hashing per byte.
	insertOpts.NoSHA256 = true
	diff, err := build(ingestContents{in: in, opts: insertOpts})
	if err != nil {
		return nil, err
	}
	for _, t := range append([]*tree.Tree{diff}, also...) {
		if t == nil {
			continue
		}
		if err := c.pinTree(ctx, in, t); err != nil {
			return nil, err
		}
	}
	if err := write(diff); err != nil {
		return nil, err
	}
	if err := in.Commit(ctx, id); err != nil {
		return nil, fmt.Errorf("register objects: %w", err)
	}
	committed = true
	return diff, nil
}

// insertOptions are the dedup options for storing a content: the host
// repository's objects and then the other stores' (read-only image
// stores, a split store's other home) are looked up for one to link in.
func (c *contents) insertOptions(ctx context.Context) (dedup.InsertOptions, error) {
	opts, err := c.host.insertOptions(ctx)
	if err != nil || len(c.ro) == 0 {
		return opts, err
	}
	stores := storeAlternate{dirs: c.ro}
	if opts.Alternate == nil {
		return dedup.InsertOptions{AlternateMode: dedup.LinkAuto, Alternate: stores, TrustAlternate: true}, nil
	}
	opts.Alternate = alternates{opts.Alternate, stores}
	return opts, nil
}

// storeAlternate finds a content among other cfs stores' objects (named
// by the same digests), and checks it byte for byte before offering it:
// another store's damage must not enter this one.
type storeAlternate struct{ dirs []string }

// Find implements dedup.Alternate.
func (a storeAlternate) Find(ctx context.Context, d dedup.Digest, size int64, content io.ReaderAt) (dedup.Candidate, bool, error) {
	p, ok := findObject(a.dirs, d)
	if !ok {
		return dedup.Candidate{}, false, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return dedup.Candidate{}, false, err
	}
	defer f.Close()
	if err := dedup.SameContent(ctx, f, content, size); err != nil {
		return dedup.Candidate{}, false, fmt.Errorf("object %s does not hold the content it is named for: %w", p, err)
	}
	return dedup.Candidate{Path: p}, true, nil
}

// alternates asks each Alternate in turn; the first that finds the
// content wins, and a failed lookup does not stop the next one.
type alternates []dedup.Alternate

// Find implements dedup.Alternate.
func (as alternates) Find(ctx context.Context, d dedup.Digest, size int64, content io.ReaderAt) (dedup.Candidate, bool, error) {
	var errs []error
	for _, a := range as {
		c, found, err := a.Find(ctx, d, size, content)
		if found {
			return c, true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return dedup.Candidate{}, false, errors.Join(errs...)
}

// pinTree pins every object t uses in the session, including those it
// did not insert (a metacopy file reuses its lower file's object). An
// object only a read-only store has is imported first.
func (c *contents) pinTree(ctx context.Context, in *dedup.Ingest, t *tree.Tree) error {
	return t.Walk(func(p string, e tree.Dirent) error {
		if e.HardLink || !e.Node.IsExternal() {
			return nil
		}
		d := e.Node.Digest
		if d == nil {
			return fmt.Errorf("%s: external file without a digest", p)
		}
		if !c.objects.Has(*d) {
			if ro, ok := c.roObject(*d); ok {
				o, _, err := in.InsertFile(ctx, ro, dedup.LinkAuto)
				if err != nil {
					return fmt.Errorf("%s: import object from read-only store: %w", p, err)
				}
				if o.Digest != *d {
					return fmt.Errorf("%s: object %s in a read-only store holds %s: the store is damaged", p, ro, o.Digest)
				}
			}
		}
		if err := in.Ref(ctx, *d); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
}

// session starts an ingest session for reading a layer whose new
// contents must be stored for the occasion (the diff of a writable
// layer): they stay pinned until the session's Abort.
func (c *contents) session(ctx context.Context) (*dedup.Ingest, layers.Contents, error) {
	in, err := c.objects.BeginIngest(ctx)
	if err != nil {
		return nil, nil, err
	}
	return in, ingestContents{in: in}, nil
}

// open opens the object holding an external file's content.
func (c *contents) open(n *tree.Node) (io.ReadCloser, error) {
	if n.Digest == nil {
		return nil, fmt.Errorf("cfs: external file with no digest (payload %q)", n.Payload)
	}
	f, err := c.objects.Open(*n.Digest)
	if errors.Is(err, dedup.ErrNotFound) {
		if ro, ok := c.roObject(*n.Digest); ok {
			return os.Open(ro)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cfs: object %s: %w", n.Payload, err)
	}
	return f, nil
}

// copyRefs gives layer to the refs of layer from.
func (c *contents) copyRefs(ctx context.Context, from, to string) error {
	refs, err := c.objects.Refs(from)
	if err == nil {
		err = c.objects.SetRefs(ctx, to, refs)
	}
	return err
}

// dropRefs drops layer id's refs, if it has any. A layer that was never
// sealed (a container's) registered none, and its removal frees no
// object.
func (c *contents) dropRefs(ctx context.Context, id string) error {
	err := c.objects.DropRefs(ctx, id)
	switch {
	case errors.Is(err, dedup.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("drop object refs: %w", err)
	}
	c.markRemoved()
	return nil
}

// markRemoved notes that objects may have lost their last ref.
func (c *contents) markRemoved() {
	c.mu.Lock()
	c.removed = true
	c.mu.Unlock()
}

// dropStaleRefs drops the refs of layers not among ids (a removal
// interrupted between moving the layer away and dropping its refs), so
// that their objects can be collected.
func (c *contents) dropStaleRefs(ctx context.Context, ids []string) error {
	withRefs, err := c.objects.Layers()
	if err != nil {
		return fmt.Errorf("list object refs: %w", err)
	}
	exists := map[string]bool{}
	for _, id := range ids {
		exists[id] = true
	}
	for _, id := range withRefs {
		if !exists[id] {
			if err := c.objects.DropRefs(ctx, id); err != nil && !errors.Is(err, dedup.ErrNotFound) {
				return fmt.Errorf("drop refs of removed layer %s: %w", id, err)
			}
		}
	}
	return nil
}

// removedLayers says whether layers' refs were dropped or replaced in
// this process (close then collects).
func (c *contents) removedLayers() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removed
}

// close collects the objects that lost their last ref in this process
// (unless collect is false: the caller failed to unmount), and closes
// the host index and the store.
func (c *contents) close(collect bool) error {
	c.mu.Lock()
	removed := c.removed
	c.mu.Unlock()
	var err error
	if removed && collect {
		if _, gerr := c.objects.GC(context.Background()); gerr != nil {
			err = fmt.Errorf("cfs: collect unused objects: %w", gerr)
		}
	}
	if cerr := c.host.close(); err == nil {
		err = cerr
	}
	if cerr := c.objects.Close(); err == nil {
		err = cerr
	}
	return err
}
