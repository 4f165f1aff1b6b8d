// Package corpus builds and caches the benchmark's inputs: a host
// ostree repository (a bare repo, as on Fedora CoreOS, with a hard-link
// checkout standing for the booted deployment) and container images in
// an OCI image layout made from the same packages, each layer the tar
// diff between two root filesystem snapshots with clamped mtimes.
//
// Two corpora exist: the default one from Debian bookworm packages
// (debootstrap; needs deb.debian.org the first time) and a quick
// synthetic one made in-process for CI. Each is built once into
// <cache>/<version>/ and reused while its version string is unchanged.
package corpus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Epoch is the time every layer's mtimes are clamped to, and the images'
// creation time (SOURCE_DATE_EPOCH style).
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Corpus is a built corpus: paths are relative to Dir.
type Corpus struct {
	// Version names the recipe; a new recipe gets a new version.
	Version string `json:"version"`
	// Kind is "debian" or "quick".
	Kind string `json:"kind"`
	// Dir is where the corpus lives (not stored).
	Dir string `json:"-"`
	// HostRepo is the host's bare ostree repository.
	HostRepo string `json:"host_repo"`
	// HostRef is the host commit's branch.
	HostRef string `json:"host_ref"`
	// HostRoot is a hard-link checkout of the host commit: the files the
	// host reads, sharing inodes with the repository's objects.
	HostRoot string `json:"host_root"`
	// Layout is the OCI image layout holding every image.
	Layout string `json:"layout"`
	// Images are the images, pulled in this order.
	Images []Image `json:"images"`
	// StartImage is the image containers are started from.
	StartImage string `json:"start_image"`
	// ColdArgs is the program run for the cold-cache start: one whose
	// files the host has in its page cache.
	ColdArgs []string `json:"cold_args"`
	// MemoryPaths are globs, relative to a root, of the file set read by
	// the host and then by a container in the memory scenario.
	MemoryPaths []string `json:"memory_paths"`
	// Packages lists the Debian packages of each root (default corpus).
	Packages map[string][]string `json:"packages,omitempty"`
}

// Image is one container image of the corpus.
type Image struct {
	// Name is the image's tag in the layout and its name in a store.
	Name string `json:"name"`
	// Description says what the image is.
	Description string `json:"description"`
	// Layers is the number of layers.
	Layers int `json:"layers"`
}

// Path returns rel made absolute under the corpus directory.
func (c *Corpus) Path(rel string) string { return filepath.Join(c.Dir, rel) }

// Ref returns the c/image reference of an image ("oci:DIR:TAG").
func (c *Corpus) Ref(img Image) string { return "oci:" + c.Path(c.Layout) + ":" + img.Name }

// Options say which corpus to load and where to cache it.
type Options struct {
	// CacheDir holds corpora (one directory per version) and the Debian
	// package cache.
	CacheDir string
	// Quick selects the synthetic corpus.
	Quick bool
	// Progress receives one line per build step.
	Progress io.Writer
	// Mirror is the Debian mirror for debootstrap.
	Mirror string
}

// Versions of the recipes: change one when its recipe changes.
const (
	DebianVersion = "debian-bookworm-3"
	QuickVersion  = "quick-4"
)

const manifestName = "corpus.json"

// Load returns the cached corpus, building it first when it is missing.
func Load(ctx context.Context, o Options) (*Corpus, error) {
	version, build := DebianVersion, buildDebian
	if o.Quick {
		version, build = QuickVersion, buildQuick
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Mirror == "" {
		o.Mirror = "http://deb.debian.org/debian"
	}
	dir := filepath.Join(o.CacheDir, version)
	if c, err := readManifest(dir); err == nil {
		fmt.Fprintf(o.Progress, "[corpus] %s: cached in %s\n", version, dir)
		return c, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("corpus cache: %w", err)
	}
	tmp, err := os.MkdirTemp(o.CacheDir, version+".building-")
	if err != nil {
		return nil, fmt.Errorf("corpus cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	fmt.Fprintf(o.Progress, "[corpus] %s: building in %s (once; cached afterwards)\n", version, tmp)
	c, err := build(ctx, tmp, o)
	if err != nil {
		return nil, fmt.Errorf("build corpus %s: %w", version, err)
	}
	c.Version, c.Dir = version, dir
	c.applyRecipe()
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, manifestName), b, 0o644); err != nil {
		return nil, fmt.Errorf("corpus manifest: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("corpus cache: %w", err)
	}
	fmt.Fprintf(o.Progress, "[corpus] %s: built in %s\n", version, time.Since(start).Round(time.Second))
	return c, nil
}

func readManifest(dir string) (*Corpus, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	c := &Corpus{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("corpus manifest in %s: %w", dir, err)
	}
	c.Dir = dir
	c.applyRecipe()
	return c, nil
}

// applyRecipe sets what the scenarios use of a corpus that is not built
// (so it can change without a rebuild).
func (c *Corpus) applyRecipe() {
	switch c.Kind {
	case "debian":
		c.StartImage = "python"
		c.ColdArgs = []string{"/usr/bin/python3", "-c", "import json, email, http.client"}
		c.MemoryPaths = []string{"usr/bin/python3.11", "usr/lib/python3.11", "usr/lib/x86_64-linux-gnu/libc.so.6",
			"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "usr/lib/x86_64-linux-gnu/libm.so.6",
			"usr/lib/x86_64-linux-gnu/libz.so.1*", "usr/lib/x86_64-linux-gnu/libexpat.so.1*"}
	case "quick":
		c.StartImage = "app"
		c.ColdArgs = []string{"/bin/true"}
		c.MemoryPaths = []string{"usr/lib/bench", "usr/bin/true", "usr/lib/x86_64-linux-gnu"}
	}
}

// run runs a program, returning its combined output in the error.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		tail := strings.TrimSpace(string(out))
		if len(tail) > 2000 {
			tail = "…" + tail[len(tail)-2000:]
		}
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail)
	}
	return nil
}

// commitHost commits rootfs (consuming it) into a new bare repository
// and checks the commit out with hard links to the objects, as an
// ostree host's deployment is.
func commitHost(ctx context.Context, repo, rootfs, checkout string) error {
	if err := run(ctx, "ostree", "--repo="+repo, "init", "--mode=bare"); err != nil {
		return err
	}
	if err := run(ctx, "ostree", "--repo="+repo, "commit", "--branch=host", "--consume",
		"--subject=cfs-storage-bench host", "--tree=dir="+rootfs); err != nil {
		return err
	}
	return run(ctx, "ostree", "--repo="+repo, "checkout", "-H", "host", checkout)
}

// stage is one build step of an image after its packages: a layer
// that deletes and writes files.
type stage struct {
	what   string
	remove []string
	write  map[string]string
}

// imageBuilder writes an image's layers, each the diff of the root
// filesystem before and after a step.
type imageBuilder struct {
	lay    *layout
	root   string
	prev   snapshot
	layers []layerBlob
}

// layer snapshots the root and adds the layer from the previous
// snapshot to it.
func (b *imageBuilder) layer(what string) error {
	snap, err := scan(b.root)
	if err != nil {
		return err
	}
	changes := diff(b.prev, snap)
	lb, err := b.lay.addLayer(what, func(w io.Writer) error {
		return layerWriter{root: b.root, snap: snap, epoch: epoch}.write(w, changes)
	})
	if err != nil {
		return err
	}
	b.layers, b.prev = append(b.layers, lb), snap
	return nil
}

// stage applies a stage to the root and adds its layer.
func (b *imageBuilder) stage(s stage) error {
	if err := removePaths(b.root, s.remove...); err != nil {
		return err
	}
	if err := writeFiles(b.root, s.write); err != nil {
		return err
	}
	return b.layer(s.what)
}
