package corpus

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The default corpus's recipe: a Debian bookworm host and four images
// from the same package archive.
var (
	hostPackages = []string{"systemd", "systemd-sysv", "python3", "ca-certificates", "openssl", "less"}

	debianImages = []struct {
		name, desc string
		packages   []string
		stages     []stage
	}{
		{name: "base", desc: "debootstrap --variant=minbase bookworm"},
		{name: "python", desc: "base + python3 + an app layer", packages: []string{"python3"}, stages: []stage{{
			what:   "app: /app, /etc/issue replaced, docs deleted",
			remove: []string{"usr/share/doc/*", "usr/share/man/*", "var/lib/apt/lists/*"},
			write: map[string]string{
				"app/main.py":      "import sys\nprint('hello from', sys.version)\n",
				"app/requirements": "\n",
				"etc/issue":        "cfs-storage-bench python image\n",
			},
		}}},
		{name: "nginx", desc: "base + nginx-light + config layer", packages: []string{"nginx-light"}, stages: []stage{{
			what:   "config: site replaced, docs and locales deleted",
			remove: []string{"usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*", "etc/nginx/sites-enabled/default"},
			write: map[string]string{
				"etc/nginx/conf.d/bench.conf":     "server { listen 8080; root /srv/www; }\n",
				"srv/www/index.html":              "<h1>cfs-storage-bench</h1>\n",
				"usr/share/nginx/html/index.html": "<h1>replaced</h1>\n",
			},
		}}},
		{name: "build", desc: "base + gcc, make, libc6-dev + cleanup + source layer", packages: []string{"gcc", "make", "libc6-dev"}, stages: []stage{
			{what: "cleanup: docs, man pages, locales, dpkg logs deleted", remove: []string{"usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*", "var/log/*", "var/cache/debconf/*-old"}},
			{what: "source: /src added, /etc/motd replaced", write: map[string]string{
				"src/hello.c":  "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
				"src/Makefile": "hello: hello.c\n",
				"etc/motd":     "build image\n",
			}},
		}},
	}
)

// debootstrapper makes root filesystems with debootstrap, sharing one
// package cache.
type debootstrapper struct {
	dir, debs, mirror string
	progress          io.Writer
}

// boot makes a minbase bookworm root with extra packages in
// <dir>/build/<name> and strips what a container build or an ostree
// compose leaves out.
func (d debootstrapper) boot(ctx context.Context, name string, pkgs []string) (string, error) {
	root := filepath.Join(d.dir, "build", name)
	start := time.Now()
	fmt.Fprintf(d.progress, "[corpus] debootstrap %s (%s)…\n", name, strings.Join(append([]string{"minbase"}, pkgs...), " "))
	args := []string{"--variant=minbase", "--cache-dir=" + d.debs}
	if len(pkgs) > 0 {
		args = append(args, "--include="+strings.Join(pkgs, ","))
	}
	args = append(args, "bookworm", root, d.mirror)
	if err := run(ctx, "debootstrap", args...); err != nil {
		return "", err
	}
	if err := removePaths(root, "dev/*", "proc/*", "sys/*", "run/*", "tmp/*", "var/cache/apt/archives/*.deb",
		"var/cache/apt/*.bin", "var/log/bootstrap.log", "var/lib/apt/lists/*_Packages", "etc/hostname", "etc/resolv.conf"); err != nil {
		return "", err
	}
	fmt.Fprintf(d.progress, "[corpus] debootstrap %s: %s\n", name, time.Since(start).Round(time.Second))
	return root, nil
}

// buildDebian builds the default corpus in dir: five debootstrap runs
// sharing one package cache (<cache>/debs).
func buildDebian(ctx context.Context, dir string, o Options) (*Corpus, error) {
	d := debootstrapper{dir: dir, debs: filepath.Join(o.CacheDir, "debs"), mirror: o.Mirror, progress: o.Progress}
	if err := os.MkdirAll(d.debs, 0o755); err != nil {
		return nil, err
	}
	c := &Corpus{
		Kind: "debian", HostRepo: "host/repo", HostRef: "host", HostRoot: "host/root", Layout: "oci",
		Packages: map[string][]string{"host": append([]string{"minbase"}, hostPackages...)},
	}
	host, err := d.boot(ctx, "host", hostPackages)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Progress, "[corpus] ostree commit host\n")
	if err := os.MkdirAll(filepath.Join(dir, "host"), 0o755); err != nil {
		return nil, err
	}
	if err := commitHost(ctx, filepath.Join(dir, c.HostRepo), host, filepath.Join(dir, c.HostRoot)); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(host); err != nil {
		return nil, err
	}
	lay, err := newLayout(filepath.Join(dir, c.Layout))
	if err != nil {
		return nil, err
	}
	base, err := d.boot(ctx, "base", nil)
	if err != nil {
		return nil, err
	}
	bb := &imageBuilder{lay: lay, root: base, prev: snapshot{}}
	if err := bb.layer("debootstrap --variant=minbase bookworm"); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(base); err != nil {
		return nil, err
	}
	for _, spec := range debianImages {
		b := &imageBuilder{lay: lay, prev: bb.prev, layers: []layerBlob{bb.layers[0]}}
		if err := d.image(ctx, b, spec.name, spec.packages, spec.stages); err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.name, err)
		}
		c.Images = append(c.Images, Image{Name: spec.name, Description: spec.desc, Layers: len(b.layers)})
		c.Packages[spec.name] = append([]string{"minbase"}, spec.packages...)
		fmt.Fprintf(o.Progress, "[corpus] image %s: %d layers\n", spec.name, len(b.layers))
	}
	if err := os.RemoveAll(filepath.Join(dir, "build")); err != nil {
		return nil, err
	}
	return c, lay.finish()
}

// image adds an image on the base layer: a layer of its packages (a root
// of their own, diffed against the base), then one per stage.
func (d debootstrapper) image(ctx context.Context, b *imageBuilder, name string, pkgs []string, stages []stage) error {
	if len(pkgs) > 0 {
		root, err := d.boot(ctx, name, pkgs)
		if err != nil {
			return err
		}
		defer os.RemoveAll(root)
		b.root = root
		if err := b.layer("apt-get install " + strings.Join(pkgs, " ")); err != nil {
			return err
		}
	}
	for _, s := range stages {
		if err := b.stage(s); err != nil {
			return err
		}
	}
	return b.lay.addImage(name, epoch, []string{"/bin/bash"}, b.layers)
}
