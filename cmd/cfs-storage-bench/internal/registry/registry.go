// Package registry is the benchmark's registry source: Debian's
// docker-registry (the distribution registry) on a free 127.0.0.1 port,
// serving plain HTTP from a data folder that is kept with the corpus,
// and the pushes of the corpus's images into it with zstd:chunked
// compression, whose table of contents lets containers/storage pull
// with ranged reads (its partial-pull path, the only one on which its
// overlay driver writes composefs images).
package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

// Compression is the compression of the pushed layers.
const Compression = "zstd:chunked"

// Registry is a running docker-registry.
type Registry struct {
	// Addr is its host:port on 127.0.0.1.
	Addr string
	// Data is its storage root.
	Data string
	cmd  *exec.Cmd
	done chan error
	log  string
	stop sync.Once
}

// Binary returns the path of docker-registry, or an error that says
// how to get it.
func Binary() (string, error) {
	p, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", fmt.Errorf("the registry source needs docker-registry (Debian: apt-get install docker-registry): %w", err)
	}
	return p, nil
}

// Start runs bin on a free 127.0.0.1 port with its storage under data
// and its config and log under run, and waits until it answers /v2/.
// It dies with the calling thread's process (Pdeathsig).
func Start(ctx context.Context, bin, data, run string) (*Registry, error) {
	var errs []error
	for range 3 { // the free port can be taken between finding and binding it
		r, err := start(ctx, bin, data, run)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func start(ctx context.Context, bin, data, run string) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, d := range []string{data, run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(run, "config.yml")
	yml := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", data, addr)
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
		return nil, err
	}
	r := &Registry{Addr: addr, Data: data, log: filepath.Join(run, "registry.log"), done: make(chan error, 1)}
	logf, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", conf)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		select {
		case werr := <-r.done:
			r.done <- werr
			return nil, fmt.Errorf("docker-registry on %s exited (%v): %s", addr, werr, r.logTail())
		case <-ctx.Done():
			r.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("docker-registry on %s did not come up: %v: %s", addr, err, r.logTail())
		}
	}
}

func (r *Registry) logTail() string {
	b, _ := os.ReadFile(r.log)
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop ends the registry and waits for it; later calls do nothing.
func (r *Registry) Stop() {
	r.stop.Do(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
		}
	})
}

// Ref is the docker:// reference of repo:tag in the registry.
func (r *Registry) Ref(repo, tag string) string {
	return "docker://" + r.Addr + "/" + repo + ":" + tag
}

// SystemContext is the c/image context for talking to the registry:
// plain HTTP (TLS verification off, which lets c/image fall back to
// http), no credentials, and c/image's blob info cache in cacheDir
// rather than the host's /var/lib/containers/cache.
func SystemContext(cacheDir string) *types.SystemContext {
	return &types.SystemContext{
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
		AuthFilePath:                filepath.Join(cacheDir, "no-auth.json"),
		BlobInfoCacheDir:            cacheDir,
	}
}

// Push copies the image src (any c/image reference, e.g. oci:DIR:TAG)
// to repo:tag in the registry, every layer recompressed as
// zstd:chunked.
func (r *Registry) Push(ctx context.Context, src, repo, tag, cacheDir string) error {
	srcRef, err := alltransports.ParseImageName(src)
	if err != nil {
		return fmt.Errorf("push source %s: %w", src, err)
	}
	dst := r.Ref(repo, tag)
	dstRef, err := alltransports.ParseImageName(dst)
	if err != nil {
		return fmt.Errorf("push destination %s: %w", dst, err)
	}
	alg, err := compression.AlgorithmByName(Compression)
	if err != nil {
		return err
	}
	dctx := SystemContext(cacheDir)
	dctx.CompressionFormat = &alg
	pc, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer pc.Destroy()
	if _, err := copy.Image(ctx, pc, dstRef, srcRef, &copy.Options{
		DestinationCtx: dctx, SourceCtx: SystemContext(cacheDir), ForceCompressionFormat: true,
	}); err != nil {
		return fmt.Errorf("push %s to %s: %w", src, dst, err)
	}
	return nil
}

// Image is one image to push: its source reference, and its repository
// and tag in the registry.
type Image struct {
	Src, Repo, Tag string
}

// stampName marks a data folder whose pushes all completed.
const stampName = "pushed"

// stamp is what the stamp holds: the pushes and their compression, so
// that a changed image list or compression pushes again.
func stamp(images []Image) string {
	var b strings.Builder
	fmt.Fprintf(&b, "compression %s\n", Compression)
	for _, img := range images {
		fmt.Fprintf(&b, "%s %s:%s\n", img.Src, img.Repo, img.Tag)
	}
	return b.String()
}

// Pushed reports whether data holds a complete push of images.
func Pushed(data string, images []Image) bool {
	b, err := os.ReadFile(filepath.Join(data, stampName))
	return err == nil && string(b) == stamp(images)
}

// PushAll pushes images into the registry unless its data folder holds
// a complete push of them already (it returns false then); what an
// interrupted push left is pushed over.
func (r *Registry) PushAll(ctx context.Context, images []Image, cacheDir string, progress func(format string, args ...any)) (bool, error) {
	if Pushed(r.Data, images) {
		return false, nil
	}
	os.Remove(filepath.Join(r.Data, stampName))
	for i, img := range images {
		progress("[registry] push %d/%d %s as %s to %s", i+1, len(images), img.Src, Compression, r.Addr)
		if err := r.Push(ctx, img.Src, img.Repo, img.Tag, cacheDir); err != nil {
			return true, err
		}
	}
	return true, os.WriteFile(filepath.Join(r.Data, stampName), []byte(stamp(images)), 0o644)
}
