package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/registry"
)

// installMkcomposefs puts a link named mkcomposefs to the cfs-storage
// binary cli (which, run by that name, is a byte-identical drop-in for
// libcomposefs' tool) in <workDir>/bin, first on this process's PATH:
// c/storage's overlay in composefs mode looks mkcomposefs up on PATH
// (once per process) and runs `mkcomposefs --from-file - -` for every
// layer it pulls partially. Debian has no composefs package.
func installMkcomposefs(workDir, cli string) error {
	if cli == "" {
		return fmt.Errorf("driver %s needs cfs-storage as its mkcomposefs: none next to cfs-storage-bench or on PATH (`make build` puts both in bin/; or --cfs-storage PATH)", ComposefsDriver)
	}
	abs, err := filepath.Abs(cli)
	if err != nil {
		return err
	}
	dir := filepath.Join(workDir, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	link := filepath.Join(dir, "mkcomposefs")
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(abs, link); err != nil {
		return fmt.Errorf("mkcomposefs link: %w", err)
	}
	path := os.Getenv("PATH")
	if first, _, _ := strings.Cut(path, ":"); first != dir {
		os.Setenv("PATH", dir+":"+path)
	}
	return nil
}

// registryRepo is the repository an image of the corpus is pushed to.
func registryRepo(img corpus.Image) string { return "bench/" + img.Name }

// startRegistry starts the registry source on the corpus's registry
// data (kept beside the corpus) and pushes the corpus into it unless a
// complete push is there already.
func (r *runner) startRegistry(ctx context.Context) error {
	bin, err := registry.Binary()
	if err != nil {
		return fmt.Errorf("%w (or --sources oci)", err)
	}
	c := r.cfg.Corpus
	data := c.Path("registry-" + strings.ReplaceAll(registry.Compression, ":", "-"))
	reg, err := registry.Start(ctx, bin, data, filepath.Join(r.scratch, "registry"))
	if err != nil {
		return fmt.Errorf("registry source: %w", err)
	}
	var images []registry.Image
	for _, img := range c.Images {
		images = append(images, registry.Image{Src: c.Ref(img), Repo: registryRepo(img), Tag: "latest"})
	}
	start := time.Now()
	pushed, err := reg.PushAll(ctx, images, r.cacheDir, r.logf)
	if err != nil {
		reg.Stop()
		return fmt.Errorf("registry source: %w", err)
	}
	if pushed {
		r.logf("[registry] corpus pushed as %s in %s (kept in %s)", registry.Compression, time.Since(start).Round(time.Millisecond), data)
	}
	r.logf("[registry] docker-registry on %s serving %s", reg.Addr, data)
	r.reg = reg
	return nil
}

// sourceRef is the c/image reference of a corpus image in a source, and
// the system context to read it with.
func (r *runner) sourceRef(src string, img corpus.Image) (string, *types.SystemContext) {
	if src == "registry" {
		return r.reg.Ref(registryRepo(img), "latest"), registry.SystemContext(r.cacheDir)
	}
	return r.cfg.Corpus.Ref(img), &types.SystemContext{BlobInfoCacheDir: r.cacheDir}
}

// sourceBlobs is the folder whose files are read into the page cache
// before each pull from src (the source in memory, as from a fast
// network).
func (r *runner) sourceBlobs(src string) string {
	if src == "registry" {
		return r.reg.Data
	}
	return filepath.Join(r.cfg.Corpus.Path(r.cfg.Corpus.Layout), "blobs")
}

// checkComposefs says whether the overlay-composefs store really runs
// in composefs mode: how many of its layers have the composefs image
// c/storage writes on a partial pull (<layer>/composefs-data/
// composefs.blob), and how many of the lower layers of a container of
// each image are composefs images (c/storage mounts each as EROFS,
// passes it to overlay as a lower with the layer's files as a data-only
// lower after "::", and detaches the EROFS mount once overlay holds it,
// so they are counted as the data-only lowers of the overlay mount's
// lowerdir, which may name them by path or by file descriptor). It
// returns a remark for the report.
func (r *runner) checkComposefs(ctx context.Context, bs *benchStore, src string) string {
	layers, err := bs.store.Layers()
	if err != nil {
		return fmt.Sprintf("%s: could not check for composefs: %v", bs.label, err)
	}
	blobs := 0
	for _, l := range layers {
		if _, err := os.Stat(filepath.Join(bs.store.GraphRoot(), "overlay", l.ID, "composefs-data", "composefs.blob")); err == nil {
			blobs++
		}
	}
	lowers, images := 0, 0
	for _, img := range r.cfg.Corpus.Images {
		id, ok := bs.images[img.Name]
		if !ok {
			continue
		}
		n, err := composefsLowersOf(bs, id)
		if err != nil {
			return fmt.Sprintf("%s: could not check for composefs: %v", bs.label, err)
		}
		lowers += n
		images++
	}
	mode := "in composefs mode"
	if blobs == 0 || lowers == 0 {
		mode = "NOT in composefs mode (its layers are plain overlay directories)"
	}
	s := fmt.Sprintf("%s ran %s: after the pull from %s, %d of its %d layers have a composefs image (composefs-data/composefs.blob, written by mkcomposefs = `cfs-storage mkcomposefs`), and the overlay mounts of a container of each of its %d pulled images had %d composefs (EROFS) lowers in all.",
		bs.label, mode, src, blobs, len(layers), images, lowers)
	if src != "registry" {
		s += " Only a pull from the registry source (ranged reads) takes c/storage's partial-pull path, on which it writes composefs images."
	}
	return s
}

// composefsLowersOf mounts a container of image id, counts the
// composefs lowers of its overlay mount, and removes the container.
func composefsLowersOf(bs *benchStore, id string) (int, error) {
	ctr, err := bs.store.CreateContainer("", nil, id, "", "", nil)
	if err != nil {
		return 0, err
	}
	defer bs.store.DeleteContainer(ctr.ID)
	if _, err := bs.store.Mount(ctr.ID, ""); err != nil {
		return 0, err
	}
	defer bs.store.Unmount(ctr.ID, true)
	opts, err := mountOptions("overlay", bs.dir)
	if err != nil {
		return 0, err
	}
	return dataOnlyLowers(opts), nil
}

// dataOnlyLowers counts the data-only lowers ("::" separated) in the
// lowerdir of overlay mount options.
func dataOnlyLowers(opts []string) int {
	n := 0
	for _, o := range opts {
		for _, opt := range strings.Split(o, ",") {
			if lower, ok := strings.CutPrefix(opt, "lowerdir="); ok {
				n += strings.Count(lower, "::")
			}
		}
	}
	return n
}

// mountOptions returns the super options of the mounts of type fstype at
// or under dir in this process's mount table.
func mountOptions(fstype, dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, typ := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(typ) < 3 || typ[0] != fstype {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, unescapeMount(typ[2]))
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for a space) of a
// mountinfo path.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
