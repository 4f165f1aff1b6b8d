package scenario

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage/pkg/chunked/compressor"
)

// fakeFile is a tar entry of a test layer.
type fakeFile struct {
	name, body string
	typ        byte // tar.TypeReg unless set
	link       string
}

// zstdChunked makes a zstd:chunked layer blob of files with c/storage's
// compressor (as `push --compression-format zstd:chunked` does) and
// returns it with its descriptor (annotations included).
func zstdChunked(t *testing.T, files []fakeFile) ([]byte, imgspec.Descriptor) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, ModTime: time.Unix(1e9, 0), Typeflag: f.typ, Linkname: f.link}
		switch f.typ {
		case 0:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.body))
		case tar.TypeDir:
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			tw.Write([]byte(f.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	annotations := map[string]string{}
	zw, err := compressor.ZstdCompressor(&blob, annotations, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := blob.Bytes()
	return b, imgspec.Descriptor{MediaType: imgspec.MediaTypeImageLayerZstd, Digest: digest.FromBytes(b), Size: int64(len(b)), Annotations: annotations}
}

// fakeRegistry serves images (name → layers) and their blobs, with
// ranges, as a registry's /v2/ API does.
func fakeRegistry(t *testing.T, blobs map[digest.Digest][]byte, images map[string][]imgspec.Descriptor) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/v2/bench/")
		name, ref, _ := strings.Cut(rest, "/")
		if d, isBlob := strings.CutPrefix(ref, "blobs/"); ok && isBlob {
			if b, ok := blobs[digest.Digest(d)]; ok {
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
				return
			}
		}
		if layers, known := images[name]; ok && known && ref == "manifests/latest" {
			b, _ := json.Marshal(imgspec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageManifest,
				Config: imgspec.Descriptor{MediaType: imgspec.MediaTypeImageConfig, Digest: digest.FromString("{}"), Size: 2}, Layers: layers})
			w.Header().Set("Content-Type", imgspec.MediaTypeImageManifest)
			w.Write(b)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestFloorFromRegistry reads the TOCs of real zstd:chunked layers from a
// registry and checks the floor: only regular files whose content is new
// to the host and to everything pulled before count (not a content the
// host has, not one seen earlier in the same layer, an earlier layer or
// an earlier image, not empty files, hard links, directories or
// symlinks); what counts for each is exactly its compressed bytes (the
// TOC's range decompresses to the file, chunked or not); a layer shared
// by two images counts once in the compressed size.
func TestFloorFromRegistry(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	a := random(3 << 20) // big enough for the rolling checksum to chunk it
	b, e, f := random(70<<10), strings.Repeat("compressible ", 20000), random(5<<10)
	l1, d1 := zstdChunked(t, []fakeFile{{name: "etc/", typ: tar.TypeDir}, {name: "etc/a", body: a}, {name: "etc/b", body: b},
		{name: "etc/empty"}, {name: "etc/hard", typ: tar.TypeLink, link: "etc/a"}, {name: "etc/sym", typ: tar.TypeSymlink, link: "a"},
		{name: "etc/a-again", body: a}})
	l2, d2 := zstdChunked(t, []fakeFile{{name: "usr/a", body: a}, {name: "usr/e", body: e}})
	l3, d3 := zstdChunked(t, []fakeFile{{name: "opt/f", body: f}, {name: "opt/e", body: e}})
	blobs := map[digest.Digest][]byte{d1.Digest: l1, d2.Digest: l2, d3.Digest: l3}
	addr := fakeRegistry(t, blobs, map[string][]imgspec.Descriptor{"one": {d1, d2}, "two": {d1, d3}})

	tr := newTOCReader(addr)
	var images []imageTOCs
	for _, name := range []string{"one", "two"} {
		img, err := tr.image(context.Background(), name, "bench/"+name, "latest")
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, img)
	}
	// The compressed range of name in blob, checked to decompress to body.
	rangeOf := func(img, layer int, blob []byte, name, body string) int64 {
		t.Helper()
		for _, en := range images[img].Layers[layer].Entries {
			if en.Name != name {
				continue
			}
			dec, _ := zstd.NewReader(nil)
			defer dec.Close()
			got, err := dec.DecodeAll(blob[en.Offset:en.EndOffset], nil)
			if err != nil || string(got) != body {
				t.Fatalf("%s: its TOC range [%d, %d) decompresses to %d bytes (%v), not the file's %d", name, en.Offset, en.EndOffset, len(got), err, len(body))
			}
			return en.EndOffset - en.Offset
		}
		t.Fatalf("no TOC entry %s", name)
		return 0
	}
	chunks := 0
	for _, en := range images[0].Layers[0].Entries {
		if en.Type == "chunk" && en.Name == "etc/a" {
			chunks++
		}
	}
	if chunks == 0 {
		t.Errorf("etc/a was not chunked: the test does not cover chunked files")
	}
	rangeA, rangeB, rangeE := rangeOf(0, 0, l1, "etc/a", a), rangeOf(0, 0, l1, "etc/b", b), rangeOf(0, 1, l2, "usr/e", e)
	rangeF, rangeE3 := rangeOf(1, 1, l3, "opt/f", f), rangeOf(1, 1, l3, "opt/e", e)

	host := map[string]bool{sha(b): true, sha("not in any layer"): true}
	got, err := computeFloor(images, host)
	if err != nil {
		t.Fatal(err)
	}
	// The TOCs' and tar-splits' bytes, from the annotations.
	meta := func(d imgspec.Descriptor) int64 {
		var off, toc, tarSplit, x int64
		if _, err := fmt.Sscanf(d.Annotations["io.github.containers.zstd-chunked.manifest-position"], "%d:%d:%d:%d", &off, &toc, &x, &x); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscanf(d.Annotations["io.github.containers.zstd-chunked.tarsplit-position"], "%d:%d:%d", &off, &tarSplit, &x); err != nil {
			t.Fatal(err)
		}
		if toc <= 0 || tarSplit <= 0 {
			t.Fatalf("layer %s: TOC %d bytes, tar-split %d", d.Digest, toc, tarSplit)
		}
		return toc + tarSplit
	}
	want := floor{files: 3, size: int64(len(a) + len(e) + len(f)), bytes: rangeA + rangeE + rangeF,
		layers: 3, compressed: int64(len(l1) + len(l2) + len(l3)), meta: meta(d1) + meta(d2) + meta(d3)}
	if got != want {
		t.Errorf("floor with host %+v, want %+v", got, want)
	}
	noHost, err := computeFloor(images, nil)
	if err != nil {
		t.Fatal(err)
	}
	want.files, want.size, want.bytes = 4, want.size+int64(len(b)), want.bytes+rangeB
	if noHost != want {
		t.Errorf("floor without host %+v, want %+v", noHost, want)
	}
	// The second image alone: its own layers, nothing pulled before.
	two, err := computeFloor(images[1:], host)
	if err != nil {
		t.Fatal(err)
	}
	if want := (floor{files: 3, size: int64(len(a) + len(f) + len(e)), bytes: rangeA + rangeF + rangeE3,
		layers: 2, compressed: int64(len(l1) + len(l3)), meta: meta(d1) + meta(d3)}); two != want {
		t.Errorf("floor of image two alone %+v, want %+v", two, want)
	}

	// A TOC whose range lies outside its blob is refused.
	bad := images[0]
	bad.Layers = append([]layerTOC(nil), bad.Layers...)
	bad.Layers[1].Entries = append([]tocEntry(nil), bad.Layers[1].Entries...)
	for i := range bad.Layers[1].Entries {
		bad.Layers[1].Entries[i].EndOffset = bad.Layers[1].Size + 1
	}
	if _, err := computeFloor([]imageTOCs{bad}, host); err == nil {
		t.Error("a TOC range beyond the blob's end was accepted")
	}
	// A TOC that does not match its digest annotation is refused.
	d4 := d2
	d4.Annotations = map[string]string{}
	for k, v := range d2.Annotations {
		d4.Annotations[k] = v
	}
	d4.Annotations["io.github.containers.zstd-chunked.manifest-checksum"] = digest.FromString("other").String()
	addr = fakeRegistry(t, blobs, map[string][]imgspec.Descriptor{"lies": {d4}, "gzip": {{MediaType: imgspec.MediaTypeImageLayerGzip, Digest: d2.Digest, Size: d2.Size}}})
	for _, name := range []string{"lies", "gzip"} {
		if _, err := newTOCReader(addr).image(context.Background(), name, "bench/"+name, "latest"); err == nil {
			t.Errorf("image %s: TOC read without error", name)
		} else {
			t.Logf("image %s: %v", name, err)
		}
	}
}

// TestHostContents checks that the host's contents are the SHA-256 of
// its repo's .file objects, and only those.
func TestHostContents(t *testing.T) {
	repo := t.TempDir()
	put := func(rel, body string) {
		p := filepath.Join(repo, "objects", rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("ab/cd.file", "content one")
	put("ef/01.file", "content two")
	put("ab/ce.dirtree", "a dirtree")
	os.Symlink("target", filepath.Join(repo, "objects", "ab", "cf.file"))
	got, err := hostContents(repo)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[sha("content one")] || !got[sha("content two")] {
		t.Errorf("host contents %v, want the two .file objects' digests", got)
	}
}
