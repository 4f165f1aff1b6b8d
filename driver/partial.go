package driver

// Partial pulls (graphdriver.DriverWithDiffer): zstd:chunked layers (and
// estargz ones, where c/storage lets them through) pulled by ranged
// reads of the blob.
//
// Design. containers/storage's own differ (pkg/chunked) does the
// fetching, in its "flat" output format (the one overlay uses with
// composefs): into a staging directory under <home>/tmp it writes each
// regular file's content once, named by its SHA-256 (xx/yyyy), taking it
// from the other layers it knows (its cache of the TOCs of partially
// pulled layers, found through DifferTarget) or an ostree repository
// with payload links (pull option ostree_repos) where it can, fetching
// only the rest, every chunk checked against the TOC. It then
// recomputes the layer's DiffID from the tar-split and the staged files
// (c/image refuses a layer whose DiffID is not the config's).
//
// ApplyDiffFromStagingDirectory turns that into a layer the way
// ApplyDiff does: the layer's original tar is rebuilt from the tar-split
// and the staged files and goes through layers.Ingest (the same tree,
// whiteouts, hard links, owners, checks and composefs image as a full
// pull; contents already in the store or linked from the host are not
// written again), its SHA-256 checked against the differ's DiffID.
//
// The differ finds contents in two places. Its cache of the TOCs of
// partially pulled layers names files under DifferTarget: for cfs the
// layer's directory layers/<id>/flat, hard links to the layer's objects
// under their SHA-256 names. And the ostree repositories of the pull
// option ostree_repos, by payload link: the driver keeps one of its own,
// PartialPullRepo (pullrepo.go), with a link for every object of the
// store and every content of the host repository, refreshed before each
// partial pull, so that a content pulled in full before or shipped by
// the host is copied from there and never fetched.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/idtools"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

const (
	stagePrefix   = "stage-" // <home>/tmp/stage-XXXX: a staged partial pull
	stageDirName  = "dir"    // <home>/tmp/stage-XXXX/dir: the differ's output
	flatDirName   = "flat"   // layers/<id>/flat: the layer's objects by SHA-256
	tocArtifact   = "toc"    // DriverWithDifferOutput.Artifacts key of the TOC
	stagedUnknown = "cfs: staging directory %q is not one of this driver's"
)

// staged remembers the ID mappings each staged layer was pulled with
// (ApplyDiffFromStagingDirectory may be given none).
var staged = struct {
	sync.Mutex
	mappings map[string]*idtools.IDMappings
}{mappings: map[string]*idtools.IDMappings{}}

// ApplyDiffWithDiffer runs differ into a new staging directory.
func (a *adapter[F]) ApplyDiffWithDiffer(options *graphdriver.ApplyDiffWithDifferOpts, differ graphdriver.Differ) (graphdriver.DriverWithDifferOutput, error) {
	var m *idtools.IDMappings
	if options != nil {
		if options.ForceMask != nil {
			return graphdriver.DriverWithDifferOutput{}, errors.New("cfs: partial pull: force_mask is not supported")
		}
		m = options.Mappings
	}
	// The differ looks in the partial-pull repository when the pull
	// option ostree_repos lists it; fill it first.
	if err := a.c.refreshPullRepo(context.Background()); err != nil {
		return graphdriver.DriverWithDifferOutput{}, fmt.Errorf("cfs: partial pull: %w", err)
	}
	return a.c.forImages().stageDiff(differ, m)
}

// ApplyDiffFromStagingDirectory makes the staged output the content of
// the empty layer id and removes the staging directory.
func (a *adapter[F]) ApplyDiffFromStagingDirectory(id, parent string, out *graphdriver.DriverWithDifferOutput, options *graphdriver.ApplyDiffWithDifferOpts) error {
	if out == nil {
		return errors.New("cfs: apply staged diff: no differ output")
	}
	var m *idtools.IDMappings
	if options != nil {
		if options.ForceMask != nil {
			return fmt.Errorf("cfs: apply staged diff to %s: force_mask is not supported", id)
		}
		m = options.Mappings
	}
	if m == nil || m.Empty() {
		staged.Lock()
		m = staged.mappings[out.Target]
		staged.Unlock()
	}
	if _, err := a.c.stagingRoot(out.Target); err != nil {
		return err
	}
	if err := a.c.owner(id).applyStaged(context.Background(), id, parent, out, idMapper(m)); err != nil {
		return err
	}
	return a.CleanupStagingDirectory(out.Target)
}

// CleanupStagingDirectory removes a staging directory.
func (a *adapter[F]) CleanupStagingDirectory(stagingDirectory string) error {
	root, err := a.c.stagingRoot(stagingDirectory)
	if err != nil {
		return err
	}
	staged.Lock()
	delete(staged.mappings, stagingDirectory)
	staged.Unlock()
	return os.RemoveAll(root)
}

// DifferTarget returns the directory holding layer id's objects by
// SHA-256 (it may not exist: the differ then fetches).
func (a *adapter[F]) DifferTarget(id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	o := a.c.owner(id)
	if !o.layers.exists(id) {
		return "", fmt.Errorf("%w: %s", ErrLayerUnknown, id)
	}
	return filepath.Join(o.layers.path(id), flatDirName), nil
}

// stagingRoot checks that target is a staging directory of this driver
// (<home>/tmp/stage-XXXX/dir) and returns <home>/tmp/stage-XXXX.
func (d *core) stagingRoot(target string) (string, error) {
	target = filepath.Clean(target)
	root := filepath.Dir(target)
	if filepath.Base(target) != stageDirName || !strings.HasPrefix(filepath.Base(root), stagePrefix) {
		return "", fmt.Errorf(stagedUnknown, target)
	}
	for _, h := range d.homes() {
		if filepath.Dir(root) == filepath.Join(h, "tmp") {
			return root, nil
		}
	}
	return "", fmt.Errorf(stagedUnknown, target)
}

// stageDiff runs differ into a new staging directory in the flat format.
// On failure nothing is left.
func (d *core) stageDiff(differ graphdriver.Differ, m *idtools.IDMappings) (graphdriver.DriverWithDifferOutput, error) {
	root, err := os.MkdirTemp(filepath.Join(d.home, "tmp"), stagePrefix)
	if err != nil {
		return graphdriver.DriverWithDifferOutput{}, fmt.Errorf("cfs: partial pull: %w", err)
	}
	target := filepath.Join(root, stageDirName)
	if err := os.Mkdir(target, 0o700); err != nil {
		os.RemoveAll(root)
		return graphdriver.DriverWithDifferOutput{}, fmt.Errorf("cfs: partial pull: %w", err)
	}
	if m == nil {
		m = &idtools.IDMappings{}
	}
	out, err := differ.ApplyDiff(target, &archive.TarOptions{
		UIDMaps:        m.UIDs(),
		GIDMaps:        m.GIDs(),
		WhiteoutFormat: archive.OverlayWhiteoutFormat,
	}, &graphdriver.DifferOptions{
		// No StagingDirectory (for reflinked chunks): podman vendors a
		// c/storage without the field, and cfs must build there too
		// (scripts/build-podman.sh).
		Format:      graphdriver.DifferOutputFormatFlat,
		UseFsVerity: graphdriver.DifferFsVerityDisabled, // cfs computes its own digests
	})
	out.Target = target
	if err != nil {
		os.RemoveAll(root)
		return out, fmt.Errorf("cfs: partial pull: %w", err)
	}
	if !m.Empty() {
		staged.Lock()
		staged.mappings[target] = m
		staged.Unlock()
	}
	return out, nil
}

// tocFile is what cfs reads of a TOC entry.
type tocFile struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Size   int64  `json:"size,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// stagedFiles maps the cleaned names of the TOC's regular files to their
// SHA-256 (hex), which names their staged content (xx/yyyy).
func stagedFiles(out *graphdriver.DriverWithDifferOutput) (map[string]string, error) {
	raw, ok := out.Artifacts[tocArtifact]
	if !ok || raw == nil {
		return nil, errors.New("the differ gave no TOC")
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("TOC: %w", err)
	}
	var toc struct {
		Entries []tocFile `json:"entries"`
	}
	if err := json.Unmarshal(data, &toc); err != nil {
		return nil, fmt.Errorf("TOC: %w", err)
	}
	files := map[string]string{}
	for _, e := range toc.Entries {
		if e.Type != "reg" {
			continue
		}
		dg, err := digest.Parse(e.Digest)
		if err != nil || dg.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("TOC: %q: bad digest %q", e.Name, e.Digest)
		}
		files[filepath.Clean(e.Name)] = dg.Encoded()
	}
	return files, nil
}

// stagedGetter serves tar-split the content of a tar entry from the
// staged file its TOC digest names.
type stagedGetter struct {
	root  *os.Root
	files map[string]string
}

func (g stagedGetter) Get(name string) (io.ReadCloser, error) {
	sum, ok := g.files[filepath.Clean(name)]
	if !ok {
		return nil, fmt.Errorf("tar entry %q has content but no regular file in the TOC", name)
	}
	return g.root.Open(sum[:2] + "/" + sum[2:])
}

// applyStaged ingests the staged partial pull out into the empty
// writable layer id and seals it.
func (d *core) applyStaged(ctx context.Context, id, parent string, out *graphdriver.DriverWithDifferOutput, mapIDs layers.IDMapper) error {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("cfs: apply staged diff to %s: %w", id, err) }
	if m.Sealed {
		return fail(errors.New("the layer is sealed"))
	}
	if m.Parent != parent {
		return fail(fmt.Errorf("the layer's parent is %q, not %q", m.Parent, parent))
	}
	upper := d.layers.upperDir(id)
	if names, err := readDirNames(upper); err != nil || len(names) > 0 {
		return fail(fmt.Errorf("the layer already has content (%d entries, %v)", len(names), err))
	}
	if out.TarSplit == nil {
		// Only with insecure_allow_unpredictable_image_contents: the
		// layer's tar cannot be rebuilt.
		return fail(errors.New("the staged layer has no tar-split (estargz, or an old zstd:chunked layer): not supported"))
	}
	files, err := stagedFiles(out)
	if err != nil {
		return fail(err)
	}
	root, err := os.OpenRoot(out.Target)
	if err != nil {
		return fail(err)
	}
	defer root.Close()
	var shas *shaContents
	diff, err := d.commitLayer(ctx, id, m, func(contents layers.Contents) (*tree.Tree, error) {
		shas = newSHAContents(contents)
		t, err := ingestStaged(ctx, out, stagedGetter{root: root, files: files}, shas, d.contents.ingestOptions(mapIDs))
		if err == nil && !t.rootEntry {
			err = rootFromDir(t.Root, upper)
		}
		return t.Tree, err
	})
	if err != nil {
		return fail(err)
	}
	d.linkFlat(id, diff, files, shas)
	return nil
}

type ingested struct {
	*tree.Tree
	rootEntry bool
}

// ingestStaged rebuilds the layer's tar from the tar-split and the staged
// files, ingests it and checks its digest against the differ's DiffID.
func ingestStaged(ctx context.Context, out *graphdriver.DriverWithDifferOutput, g stagedGetter, contents layers.Contents, opts layers.IngestOptions) (ingested, error) {
	if _, err := out.TarSplit.Seek(0, io.SeekStart); err != nil {
		return ingested{}, err
	}
	pr, pw := io.Pipe()
	sum := digest.Canonical.Digester()
	done := make(chan error, 1)
	go func() {
		err := asm.WriteOutputTarStream(g, tsstorage.NewJSONUnpacker(out.TarSplit), io.MultiWriter(pw, sum.Hash()))
		pw.CloseWithError(err)
		done <- err
	}()
	t, stats, err := layers.Ingest(ctx, pr, contents, opts)
	if err == nil {
		// The tar's end-of-archive padding is part of the DiffID.
		_, err = io.Copy(io.Discard, pr)
	}
	pr.CloseWithError(errors.New("ingest stopped"))
	if werr := <-done; err == nil && werr != nil {
		err = fmt.Errorf("rebuild the layer's tar: %w", werr)
	}
	if err != nil {
		return ingested{}, err
	}
	if out.UncompressedDigest != "" && sum.Digest() != out.UncompressedDigest {
		return ingested{}, fmt.Errorf("the rebuilt layer's digest is %s, the differ's %s", sum.Digest(), out.UncompressedDigest)
	}
	return ingested{Tree: t, rootEntry: stats.RootEntry}, nil
}

// shaContents stores contents as the layer's Contents does, with their
// plain SHA-256 too (which the differ names files by), and remembers it
// by object.
type shaContents struct {
	base ingestContents
	mu   sync.Mutex
	sha  map[dedup.Digest]dedup.SHA256
}

func newSHAContents(c layers.Contents) *shaContents {
	base, _ := c.(ingestContents)
	base.opts.NoSHA256 = false
	return &shaContents{base: base, sha: map[dedup.Digest]dedup.SHA256{}}
}

// Put implements layers.Contents.
func (s *shaContents) Put(ctx context.Context, r io.Reader, size int64) (layers.Object, error) {
	if s.base.in == nil {
		return layers.Object{}, errors.New("cfs: no ingest session")
	}
	obj, err := s.base.in.Insert(ctx, io.LimitReader(r, size), s.base.opts)
	if err != nil {
		return layers.Object{}, err
	}
	if obj.Size != size {
		return layers.Object{}, fmt.Errorf("cfs: content is %d bytes, the entry says %d", obj.Size, size)
	}
	s.mu.Lock()
	s.sha[obj.Digest] = obj.SHA256
	s.mu.Unlock()
	return layers.Object{Payload: dedup.ObjectPath(obj.Digest), Digest: obj.Digest}, nil
}

// linkFlat fills layer id's flat directory (DifferTarget): a hard link
// to the object of each of its regular files whose SHA-256 is the one
// its TOC names, under that name. It is a cache for the differ: what
// fails to link is left out (the differ then fetches it).
func (d *core) linkFlat(id string, t *tree.Tree, files map[string]string, shas *shaContents) {
	dir := filepath.Join(d.layers.path(id), flatDirName)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return
	}
	for name, sum := range files {
		p, err := layers.CleanPath(name)
		if err != nil {
			continue
		}
		n, err := t.Lookup(p)
		if err != nil || !n.IsRegular() || !n.IsExternal() || n.Digest == nil {
			continue
		}
		if got, ok := shas.sha[*n.Digest]; !ok || hex.EncodeToString(got[:]) != sum {
			continue
		}
		sub := filepath.Join(dir, sum[:2])
		if err := os.MkdirAll(sub, 0o700); err != nil {
			continue
		}
		os.Link(d.contents.objects.Path(*n.Digest), filepath.Join(sub, sum[2:]))
	}
}
