// Package ocifix writes small real OCI images for tests: an OCI image
// layout (oci-layout, index.json, blobs/sha256/…) built with the
// image-spec types, with gzip or uncompressed layers made from tar
// bytes, and an image config (entrypoint, cmd, env, workdir, user).
package ocifix

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is one layer: its uncompressed tar, stored gzip-compressed or not.
type Layer struct {
	Tar  []byte
	Gzip bool
}

// Image is what Write produced: the manifest digest, and per layer the
// blob digest (as stored) and the diff ID (digest of the tar).
type Image struct {
	Manifest     digest.Digest
	LayerDigests []digest.Digest
	DiffIDs      []digest.Digest
}

// Write adds an image to the OCI layout at dir (created if needed) under
// the tag ref (index annotation org.opencontainers.image.ref.name).
func Write(dir, ref string, cfg imgspecv1.ImageConfig, layers []Layer) (Image, error) {
	var out Image
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return out, fmt.Errorf("ocifix: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, imgspecv1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return out, fmt.Errorf("ocifix: %w", err)
	}
	created := time.Unix(1700000000, 0).UTC()
	config := imgspecv1.Image{
		Created:  &created,
		Platform: imgspecv1.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   cfg,
		RootFS:   imgspecv1.RootFS{Type: "layers"},
	}
	man := imgspecv1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageManifest}
	for i, l := range layers {
		diffID := digest.FromBytes(l.Tar)
		blob, mediaType := l.Tar, imgspecv1.MediaTypeImageLayer
		if l.Gzip {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			if _, err := zw.Write(l.Tar); err != nil {
				return out, fmt.Errorf("ocifix: gzip layer %d: %w", i, err)
			}
			if err := zw.Close(); err != nil {
				return out, fmt.Errorf("ocifix: gzip layer %d: %w", i, err)
			}
			blob, mediaType = buf.Bytes(), imgspecv1.MediaTypeImageLayerGzip
		}
		desc, err := writeBlob(dir, mediaType, blob)
		if err != nil {
			return out, err
		}
		man.Layers = append(man.Layers, desc)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, diffID)
		config.History = append(config.History, imgspecv1.History{Created: &created, CreatedBy: fmt.Sprintf("ocifix layer %d", i)})
		out.LayerDigests = append(out.LayerDigests, desc.Digest)
		out.DiffIDs = append(out.DiffIDs, diffID)
	}
	cfgDesc, err := writeJSON(dir, imgspecv1.MediaTypeImageConfig, config)
	if err != nil {
		return out, err
	}
	man.Config = cfgDesc
	manDesc, err := writeJSON(dir, imgspecv1.MediaTypeImageManifest, man)
	if err != nil {
		return out, err
	}
	manDesc.Annotations = map[string]string{imgspecv1.AnnotationRefName: ref}
	out.Manifest = manDesc.Digest
	return out, addToIndex(dir, manDesc)
}

func addToIndex(dir string, desc imgspecv1.Descriptor) error {
	index := imgspecv1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex}
	path := filepath.Join(dir, imgspecv1.ImageIndexFile)
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &index); err != nil {
			return fmt.Errorf("ocifix: %s: %w", path, err)
		}
	}
	index.Manifests = append(index.Manifests, desc)
	data, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("ocifix: %w", err)
	}
	return os.WriteFile(path, data, 0o644)
}

func writeJSON(dir, mediaType string, v any) (imgspecv1.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return imgspecv1.Descriptor{}, fmt.Errorf("ocifix: %w", err)
	}
	return writeBlob(dir, mediaType, data)
}

func writeBlob(dir, mediaType string, data []byte) (imgspecv1.Descriptor, error) {
	sum := sha256.Sum256(data)
	d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(BlobPath(dir, d), data, 0o644); err != nil {
		return imgspecv1.Descriptor{}, fmt.Errorf("ocifix: %w", err)
	}
	return imgspecv1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
}

// BlobPath is where the layout at dir keeps blob d.
func BlobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// ReadManifest returns the manifest and config of the image tagged ref
// in the layout at dir.
func ReadManifest(dir, ref string) (imgspecv1.Manifest, imgspecv1.Image, error) {
	var man imgspecv1.Manifest
	var cfg imgspecv1.Image
	data, err := os.ReadFile(filepath.Join(dir, imgspecv1.ImageIndexFile))
	if err != nil {
		return man, cfg, fmt.Errorf("ocifix: %w", err)
	}
	var index imgspecv1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return man, cfg, fmt.Errorf("ocifix: index: %w", err)
	}
	for _, m := range index.Manifests {
		if m.Annotations[imgspecv1.AnnotationRefName] != ref {
			continue
		}
		if err := readJSON(dir, m.Digest, &man); err != nil {
			return man, cfg, err
		}
		err := readJSON(dir, man.Config.Digest, &cfg)
		return man, cfg, err
	}
	return man, cfg, fmt.Errorf("ocifix: no image tagged %q in %s", ref, dir)
}

func readJSON(dir string, d digest.Digest, v any) error {
	data, err := os.ReadFile(BlobPath(dir, d))
	if err != nil {
		return fmt.Errorf("ocifix: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("ocifix: blob %s: %w", d, err)
	}
	return nil
}
