package corpus

import (
	"context"
	"fmt"
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

// buildDebian builds the default corpus in dir: five debootstrap runs
// sharing one package cache (<cache>/debs).
func buildDebian(ctx context.Context, dir string, o Options) (*Corpus, error) {
	debs := filepath.Join(o.CacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	boot := func(name string, pkgs []string) (string, error) {
		root := filepath.Join(dir, "build", name)
		start := time.Now()
		fmt.Fprintf(o.Progress, "[corpus] debootstrap %s (%s)…\n", name, strings.Join(append([]string{"minbase"}, pkgs...), " "))
		args := []string{"--variant=minbase", "--cache-dir=" + debs}
		if len(pkgs) > 0 {
			args = append(args, "--include="+strings.Join(pkgs, ","))
		}
		args = append(args, "bookworm", root, o.Mirror)
		if err := run(ctx, "debootstrap", args...); err != nil {
			return "", err
		}
		// What a container build or an ostree compose leaves out.
		if err := removePaths(root, "dev/*", "proc/*", "sys/*", "run/*", "tmp/*", "var/cache/apt/archives/*.deb",
			"var/cache/apt/*.bin", "var/log/bootstrap.log", "var/lib/apt/lists/*_Packages", "etc/hostname", "etc/resolv.conf"); err != nil {
			return "", err
		}
		fmt.Fprintf(o.Progress, "[corpus] debootstrap %s: %s\n", name, time.Since(start).Round(time.Second))
		return root, nil
	}
	c := &Corpus{
		Kind: "debian", HostRepo: "host/repo", HostRef: "host", HostRoot: "host/root", Layout: "oci",
		Packages: map[string][]string{"host": append([]string{"minbase"}, hostPackages...)},
	}
	host, err := boot("host", hostPackages)
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
	base, err := boot("base", nil)
	if err != nil {
		return nil, err
	}
	bb := &imageBuilder{lay: lay, root: base, prev: snapshot{}}
	if err := bb.layer("debootstrap --variant=minbase bookworm"); err != nil {
		return nil, err
	}
	baseLayer, baseSnap := bb.layers[0], bb.prev
	if err := os.RemoveAll(base); err != nil {
		return nil, err
	}
	for _, spec := range debianImages {
		b := &imageBuilder{lay: lay, prev: baseSnap, layers: []layerBlob{baseLayer}}
		if len(spec.packages) > 0 {
			if b.root, err = boot(spec.name, spec.packages); err != nil {
				return nil, err
			}
			if err := b.layer("apt-get install " + strings.Join(spec.packages, " ")); err != nil {
				return nil, err
			}
		}
		for _, s := range spec.stages {
			if err := b.stage(s); err != nil {
				return nil, fmt.Errorf("image %s: %w", spec.name, err)
			}
		}
		if err := lay.addImage(spec.name, epoch, []string{"/bin/bash"}, b.layers); err != nil {
			return nil, err
		}
		if b.root != "" {
			if err := os.RemoveAll(b.root); err != nil {
				return nil, err
			}
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
