package tests

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	storage "go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/cfs-storage/cfs-storage/driver"
	"github.com/cfs-storage/cfs-storage/tests/ocifix"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// blobProxy is a reverse proxy in front of a registry that counts the
// bytes of blobs it serves and the ranged requests, and can corrupt or
// truncate the answers to ranged requests.
type blobProxy struct {
	addr      string
	bytes     atomic.Int64
	ranged    atomic.Int64
	mangle    atomic.Value // string: "", or "corrupt"/"truncate" then "-toc"/"-data"
	mangledOK atomic.Int64 // answers mangled
	seen      sync.Map     // blob path → ranged requests so far
}

func startBlobProxy(t *testing.T, registry string) *blobProxy {
	t.Helper()
	p := &blobProxy{}
	p.mangle.Store("")
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registry})
	rp.ModifyResponse = func(resp *http.Response) error {
		if !strings.Contains(resp.Request.URL.Path, "/blobs/") || resp.Request.Method != http.MethodGet {
			return nil
		}
		ranged := resp.Request.Header.Get("Range") != ""
		first := false
		if ranged {
			p.ranged.Add(1)
			// The first ranged read of a blob is its TOC's (the
			// differ's manifest read); file data follows.
			_, seen := p.seen.LoadOrStore(resp.Request.URL.Path, true)
			first = !seen
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		mode, target, _ := strings.Cut(p.mangle.Load().(string), "-")
		if ranged && resp.StatusCode == http.StatusPartialContent && len(body) > 64 && first == (target == "toc") {
			switch mode {
			case "corrupt":
				for i := len(body) / 4; i < len(body)*3/4; i += 97 {
					body[i] ^= 0x5a
				}
				p.mangledOK.Add(1)
			case "truncate":
				body = body[:len(body)/2]
				resp.Header.Del("Content-Length")
				p.mangledOK.Add(1)
			}
		}
		p.bytes.Add(int64(len(body)))
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if resp.Header.Get("Content-Length") != "" {
			resp.ContentLength = int64(len(body))
		} else {
			resp.ContentLength = -1
		}
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p.addr = ln.Addr().String()
	return p
}

// partialCLI is a cfs CLI whose storage.conf enables partial pulls.
func partialCLI(t *testing.T) *cli {
	c := newCLI(t, "cfs")
	f, err := os.OpenFile(c.conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n[storage.options.pull_options]\nenable_partial_images = \"true\"\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// partialLayers opens c's store (no CLI running) and returns its layers.
func partialLayers(t *testing.T, c *cli) []storage.Layer {
	t.Helper()
	store, err := storage.GetStore(types.StoreOptions{RunRoot: c.runroot, GraphRoot: c.root, GraphDriverName: driver.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Shutdown(true)
	ls, err := store.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func randomBytes(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}

// TestCLIPartialPull pushes images with --compression-format zstd:chunked
// to a real registry (through a counting proxy) and pulls them into cfs
// stores with partial pulls enabled: the pull goes by ranged reads, the
// layers record their TOC digests, the image and its container tree are
// those of the source; a second image sharing a big file with the first
// fetches far fewer bytes than into an empty store; a registry whose
// ranged answers are corrupted or truncated makes the pull fail with an
// error and leaves nothing in the store.
func TestCLIPartialPull(t *testing.T) {
	testutil.RequireRoot(t)
	proxy := startBlobProxy(t, startRegistry(t))
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	testImage(t, layout)
	shared := randomBytes(1 << 20)
	for _, name := range []string{"a", "b"} {
		tb, err := tarfix.Tar(tarfix.Dir("data/"), tarfix.File("data/shared-"+name, shared), tarfix.File("data/own", randomBytes(64<<10)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ocifix.Write(filepath.Join(dir, name), "v1", imgspecv1.ImageConfig{Cmd: []string{"/bin/true"}}, []ocifix.Layer{{Tar: tb, Gzip: true}}); err != nil {
			t.Fatal(err)
		}
	}
	src := newCLI(t, "cfs")
	id := lastLine(src.ok("pull", "-q", "oci:"+layout+":v1"))
	base := "docker://" + proxy.addr + "/cfs/"
	src.ok("push", "-q", "--tls-verify=false", "--compression-format", "zstd:chunked", "localhost/layout:v1", base+"test:v1")
	for _, name := range []string{"a", "b"} {
		src.ok("pull", "-q", "oci:"+filepath.Join(dir, name)+":v1")
		src.ok("push", "-q", "--tls-verify=false", "--compression-format", "zstd:chunked", "localhost/"+name+":v1", base+name+":v1")
	}

	// The test image, partially pulled.
	dst := partialCLI(t)
	proxy.ranged.Store(0)
	if got := lastLine(dst.ok("pull", "-q", "--tls-verify=false", base+"test:v1")); got != id {
		t.Errorf("partially pulled image ID %s, want %s", got, id)
	}
	if proxy.ranged.Load() == 0 {
		t.Errorf("the pull made no ranged request: not a partial pull")
	}
	trees := map[string][]string{"source": src.imageTree(id[:12]), "partial": dst.imageTree(id[:12])}
	if !slices.Equal(trees["source"], trees["partial"]) {
		t.Errorf("partially pulled tree differs:\n--- source\n%s\n--- partial\n%s",
			strings.Join(trees["source"], "\n"), strings.Join(trees["partial"], "\n"))
	}
	if stdout, stderr, code := dst.exec("run", "--rm", id[:12], "exit=3"); code != 3 {
		t.Errorf("run the partially pulled image: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	// File-level dedup: b after a fetches far less than b alone.
	fetch := func(c *cli, name string) int64 {
		before := proxy.bytes.Load()
		c.ok("pull", "-q", "--tls-verify=false", base+name+":v1")
		return proxy.bytes.Load() - before
	}
	fetch(dst, "a")
	warm := fetch(dst, "b")
	cold := fetch(partialCLI(t), "b")
	t.Logf("b fetched %d bytes after a, %d into an empty store (shared file %d bytes)", warm, cold, len(shared))
	if warm > cold-int64(len(shared))*3/4 {
		t.Errorf("b after a fetched %d bytes, %d into an empty store: the shared file was fetched again", warm, cold)
	}
	// What the store has from a full pull (image a from its OCI layout,
	// gzip) or the host repository has is not fetched either: the CLI
	// lists the driver's partial-pull repository in ostree_repos.
	full := partialCLI(t)
	full.ok("pull", "-q", "oci:"+filepath.Join(dir, "a")+":v1")
	fromStore := fetch(full, "b")
	hostRepo := testutil.OstreeRepo(t, "bare", map[string]string{"usr/share/shared": shared})
	hostBefore := testutil.OstreeObjectState(t, hostRepo)
	host := partialCLI(t)
	opt := "cfs.host_repo=" + hostRepo
	before := proxy.bytes.Load()
	host.ok("--storage-opt", opt, "pull", "-q", "--tls-verify=false", base+"b:v1")
	fromHost := proxy.bytes.Load() - before
	t.Logf("b fetched %d bytes after a full pull of a, %d onto a host with the shared file", fromStore, fromHost)
	for what, n := range map[string]int64{"after a full pull of a": fromStore, "onto a host with the shared file": fromHost} {
		if n > cold-int64(len(shared))*3/4 {
			t.Errorf("b %s fetched %d bytes, %d into an empty store: the shared file was fetched", what, n, cold)
		}
	}
	if got := host.imageTree(strings.TrimPrefix(base, "docker://") + "b:v1"); !slices.Equal(got, src.imageTree("localhost/b:v1")) {
		t.Errorf("b pulled onto the host differs from the source:\n%s", strings.Join(got, "\n"))
	}
	for p, st := range testutil.OstreeObjectState(t, hostRepo) {
		if hostBefore[p] != st {
			t.Errorf("host object %s changed: %s, was %s", p, st, hostBefore[p])
		}
	}
	testutil.OstreeFsck(t, hostRepo)

	for _, l := range partialLayers(t, dst) {
		if l.TOCDigest == "" {
			t.Errorf("layer %s has no TOC digest: not partially pulled", l.ID)
		}
	}

	// A registry whose ranged answers are damaged: an error, nothing kept.
	for _, mode := range []string{"corrupt-toc", "truncate-toc", "corrupt-data", "truncate-data"} {
		t.Run(mode, func(t *testing.T) {
			proxy.seen.Clear()
			proxy.mangle.Store(mode)
			defer proxy.mangle.Store("")
			c := partialCLI(t)
			proxy.mangledOK.Store(0)
			stdout, stderr, code := c.exec("pull", "-q", "--tls-verify=false", base+"a:v1")
			if code == 0 {
				t.Fatalf("pull through a registry that answers ranges wrongly succeeded\n%s%s", stdout, stderr)
			}
			if proxy.mangledOK.Load() == 0 {
				t.Fatalf("no ranged answer was mangled: the test proves nothing (exit %d: %s)", code, stderr)
			}
			t.Logf("exit %d: %s", code, lastLine(stderr))
			if out := strings.TrimSpace(c.ok("images", "-q")); out != "" {
				t.Errorf("images after the failed pull: %s", out)
			}
			if ls := partialLayers(t, c); len(ls) != 0 {
				t.Errorf("%d layers after the failed pull", len(ls))
			}
			if names, _ := os.ReadDir(filepath.Join(c.root, driver.Name, "tmp")); len(names) != 0 {
				t.Errorf("left in the driver's tmp: %v", names)
			}
		})
	}
}
