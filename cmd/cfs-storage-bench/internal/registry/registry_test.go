package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeLayout writes an OCI layout at dir with one image, tagged tag, of
// one gzip layer holding a few files.
func writeLayout(t *testing.T, dir, tag string) {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) imgspec.Descriptor {
		d := digest.FromBytes(b)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return imgspec.Descriptor{Digest: d, Size: int64(len(b))}
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for i := range 3 {
		body := bytes.Repeat([]byte(fmt.Sprintf("file %d ", i)), 2000*(i+1))
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("etc/f%d", i), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	layer := put(gz.Bytes())
	layer.MediaType = imgspec.MediaTypeImageLayerGzip
	cfg, _ := json.Marshal(imgspec.Image{Platform: imgspec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS: imgspec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(raw.Bytes())}}})
	cdesc := put(cfg)
	cdesc.MediaType = imgspec.MediaTypeImageConfig
	man, _ := json.Marshal(imgspec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageManifest,
		Config: cdesc, Layers: []imgspec.Descriptor{layer}})
	mdesc := put(man)
	mdesc.MediaType = imgspec.MediaTypeImageManifest
	mdesc.Annotations = map[string]string{imgspec.AnnotationRefName: tag}
	idx, _ := json.Marshal(imgspec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []imgspec.Descriptor{mdesc}})
	os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// TestRegistryPush starts the real docker-registry on loopback, pushes
// an image from an OCI layout, and checks what a partial pull needs:
// zstd layers carrying the zstd:chunked table-of-contents annotation,
// and ranged blob reads (206). A second PushAll of the same images into
// the same data folder, after a restart, pushes nothing.
func TestRegistryPush(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	writeLayout(t, layout, "v1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := filepath.Join(dir, "data")
	r, err := Start(ctx, bin, data, filepath.Join(dir, "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if !strings.HasPrefix(r.Addr, "127.0.0.1:") {
		t.Errorf("registry listens on %s, not on 127.0.0.1", r.Addr)
	}
	images := []Image{{Src: "oci:" + layout + ":v1", Repo: "bench/one", Tag: "latest"}}
	var lines []string
	logf := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	pushed, err := r.PushAll(ctx, images, filepath.Join(dir, "cache"), logf)
	if err != nil || !pushed {
		t.Fatalf("PushAll: pushed %v, %v", pushed, err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "zstd:chunked") {
		t.Errorf("progress lines %q", lines)
	}

	req, _ := http.NewRequest("GET", "http://"+r.Addr+"/v2/bench/one/manifests/latest", nil)
	req.Header.Set("Accept", imgspec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var man imgspec.Manifest
	err = json.NewDecoder(resp.Body).Decode(&man)
	resp.Body.Close()
	if err != nil || len(man.Layers) != 1 {
		t.Fatalf("manifest: %v, %d layers", err, len(man.Layers))
	}
	l := man.Layers[0]
	if l.MediaType != imgspec.MediaTypeImageLayerZstd {
		t.Errorf("layer media type %s, want %s", l.MediaType, imgspec.MediaTypeImageLayerZstd)
	}
	if l.Annotations["io.github.containers.zstd-chunked.manifest-checksum"] == "" {
		t.Errorf("layer has no zstd:chunked TOC annotation: %v", l.Annotations)
	}
	req, _ = http.NewRequest("GET", "http://"+r.Addr+"/v2/bench/one/blobs/"+l.Digest.String(), nil)
	req.Header.Set("Range", "bytes=4-11")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || len(body) != 8 {
		t.Errorf("ranged read of the layer: %s, %d bytes; want 206 and 8 bytes", resp.Status, len(body))
	}

	r.Stop()
	if !Pushed(data, images) {
		t.Fatal("data folder not stamped as pushed")
	}
	r2, err := Start(ctx, bin, data, filepath.Join(dir, "run2"))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Stop()
	if pushed, err := r2.PushAll(ctx, images, filepath.Join(dir, "cache"), logf); err != nil || pushed {
		t.Errorf("second PushAll into the same data: pushed %v, %v; want nothing to do", pushed, err)
	}
	if Pushed(data, append(images, Image{Src: "oci:" + layout + ":v1", Repo: "bench/two", Tag: "latest"})) {
		t.Error("a longer image list counts as pushed")
	}
}
