package corpus

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layout writes images into one OCI image layout directory; images
// share blobs (a base layer is stored once).
type layout struct {
	dir       string
	manifests []imgspec.Descriptor
}

func newLayout(dir string) (*layout, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	return &layout{dir: dir}, nil
}

// layerBlob is a compressed layer written to the layout.
type layerBlob struct {
	desc   imgspec.Descriptor
	diffID digest.Digest
	what   string // history comment
}

// addLayer writes one gzip-compressed layer produced by fill (which
// writes the uncompressed tar).
func (l *layout) addLayer(what string, fill func(io.Writer) error) (layerBlob, error) {
	tmp, err := os.CreateTemp(l.dir, "layer-")
	if err != nil {
		return layerBlob{}, fmt.Errorf("layer %s: %w", what, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	blobHash, diffHash := sha256.New(), sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, blobHash)}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return layerBlob{}, err
	}
	if err := fill(io.MultiWriter(zw, diffHash)); err != nil {
		return layerBlob{}, fmt.Errorf("layer %s: %w", what, err)
	}
	if err := zw.Close(); err != nil {
		return layerBlob{}, fmt.Errorf("layer %s: compress: %w", what, err)
	}
	if err := tmp.Close(); err != nil {
		return layerBlob{}, err
	}
	d := sumDigest(blobHash)
	if err := os.Rename(tmp.Name(), l.blobPath(d)); err != nil {
		return layerBlob{}, fmt.Errorf("layer %s: %w", what, err)
	}
	return layerBlob{
		desc:   imgspec.Descriptor{MediaType: imgspec.MediaTypeImageLayerGzip, Digest: d, Size: cw.n},
		diffID: sumDigest(diffHash),
		what:   what,
	}, nil
}

func sumDigest(h hash.Hash) digest.Digest {
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
}

func (l *layout) blobPath(d digest.Digest) string {
	return filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// writeJSON stores v as a blob and returns its descriptor.
func (l *layout) writeJSON(mediaType string, v any) (imgspec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return imgspec.Descriptor{}, err
	}
	d := digest.FromBytes(b)
	if err := os.WriteFile(l.blobPath(d), b, 0o644); err != nil {
		return imgspec.Descriptor{}, fmt.Errorf("oci layout blob %s: %w", d, err)
	}
	return imgspec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

// addImage writes an image's config and manifest, tagged tag.
func (l *layout) addImage(tag string, created time.Time, cmd []string, layers []layerBlob) error {
	cfg := imgspec.Image{
		Created:  &created,
		Platform: imgspec.Platform{Architecture: "amd64", OS: "linux"},
		Config: imgspec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: cmd,
		},
		RootFS: imgspec.RootFS{Type: "layers"},
	}
	man := imgspec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageManifest}
	for _, lb := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, lb.diffID)
		cfg.History = append(cfg.History, imgspec.History{Created: &created, CreatedBy: lb.what})
		man.Layers = append(man.Layers, lb.desc)
	}
	cdesc, err := l.writeJSON(imgspec.MediaTypeImageConfig, cfg)
	if err != nil {
		return err
	}
	man.Config = cdesc
	mdesc, err := l.writeJSON(imgspec.MediaTypeImageManifest, man)
	if err != nil {
		return err
	}
	mdesc.Annotations = map[string]string{imgspec.AnnotationRefName: tag}
	l.manifests = append(l.manifests, mdesc)
	return nil
}

// finish writes index.json and oci-layout.
func (l *layout) finish() error {
	idx := imgspec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageIndex, Manifests: l.manifests}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.dir, imgspec.ImageIndexFile), b, 0o644); err != nil {
		return fmt.Errorf("oci layout index: %w", err)
	}
	lay, _ := json.Marshal(imgspec.ImageLayout{Version: imgspec.ImageLayoutVersion})
	if err := os.WriteFile(filepath.Join(l.dir, imgspec.ImageLayoutFile), lay, 0o644); err != nil {
		return fmt.Errorf("oci layout: %w", err)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
