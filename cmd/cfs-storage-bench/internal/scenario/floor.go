package scenario

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage/pkg/chunked/toc"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
)

// The zstd:chunked annotation that places a layer's TOC in its blob
// (go.podman.io/storage/pkg/chunked/internal/minimal.ManifestInfoKey):
// "<offset>:<length>:<uncompressed length>:<type>", type 1 (CRFS).
// The tar-split's, "<offset>:<length>:<uncompressed length>", is
// TarSplitInfoKey.
const (
	tocPositionKey      = "io.github.containers.zstd-chunked.manifest-position"
	tarSplitPositionKey = "io.github.containers.zstd-chunked.tarsplit-position"
	tocTypeCRFS         = 1
	maxTOCBytes         = 64 << 20
)

// tocEntry is what the floor reads of an entry of a zstd:chunked TOC
// (minimal.FileMetadata): a regular file's content digest, and where its
// compressed content lies in the blob, [Offset, EndOffset) (every chunk
// of a file chunked by the rolling checksum lies in that range; the
// "chunk" entries that follow it add nothing).
type tocEntry struct {
	Type      string `json:"type"`
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
	Offset    int64  `json:"offset"`
	EndOffset int64  `json:"endOffset"`
}

// layerTOC is one layer of an image in the registry: its blob's digest
// and compressed size, its TOC's entries, and the compressed bytes of
// its TOC and tar-split (what a partial pull reads besides contents).
type layerTOC struct {
	Digest  string
	Size    int64
	Entries []tocEntry
	Meta    int64
}

// imageTOCs are an image's layers, bottom first.
type imageTOCs struct {
	Name   string
	Layers []layerTOC
}

// floor is the least a partial pull can fetch: the compressed bytes of
// the regular files whose content is new to the host and the store.
type floor struct {
	// files are the regular-file contents new to host and store,
	// size their uncompressed bytes, bytes their compressed bytes.
	files       int
	size, bytes int64
	// layers are the distinct layers pulled, compressed their blobs'
	// bytes (the image's compressed size), meta their TOCs' and
	// tar-splits' compressed bytes (not part of the floor).
	layers           int
	compressed, meta int64
}

// computeFloor walks images in pull order, their layers bottom first,
// each distinct layer once (a layer already pulled is reused, not
// fetched), and adds up the compressed bytes (EndOffset − Offset) of
// the TOC's regular files with content whose SHA-256 is neither in
// known (the host's contents; nil: no host) nor in a file counted
// before, in this or an earlier layer.
func computeFloor(images []imageTOCs, known map[string]bool) (floor, error) {
	var f floor
	seen := map[string]bool{}
	layers := map[string]bool{}
	for _, img := range images {
		for _, l := range img.Layers {
			if layers[l.Digest] {
				continue
			}
			layers[l.Digest] = true
			f.layers++
			f.compressed += l.Size
			f.meta += l.Meta
			for _, e := range l.Entries {
				if e.Type != "reg" || e.Size == 0 {
					continue
				}
				if e.Digest == "" {
					return f, fmt.Errorf("image %s, layer %s: TOC entry %s (%d bytes) has no digest", img.Name, l.Digest, e.Name, e.Size)
				}
				if e.Offset <= 0 || e.EndOffset <= e.Offset || e.EndOffset > l.Size {
					return f, fmt.Errorf("image %s, layer %s: TOC entry %s: compressed range [%d, %d) not within the %d-byte blob",
						img.Name, l.Digest, e.Name, e.Offset, e.EndOffset, l.Size)
				}
				if known[e.Digest] || seen[e.Digest] {
					continue
				}
				seen[e.Digest] = true
				f.files++
				f.size += e.Size
				f.bytes += e.EndOffset - e.Offset
			}
		}
	}
	return f, nil
}

// hostContents returns the SHA-256 digests ("sha256:<hex>") of the
// regular-file contents of a bare ostree repository (its .file objects).
func hostContents(repo string) (map[string]bool, error) {
	out := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(p, ".file") {
			return err
		}
		sum, err := corpus.HashFile(p)
		if err != nil {
			return err
		}
		out["sha256:"+hex.EncodeToString(sum[:])] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("host contents: %w", err)
	}
	return out, nil
}

// tocReader reads images' TOCs from a registry over plain HTTP, each
// layer's once.
type tocReader struct {
	client *http.Client
	addr   string
	layers map[string]layerTOC
}

func newTOCReader(addr string) *tocReader {
	return &tocReader{client: &http.Client{}, addr: addr, layers: map[string]layerTOC{}}
}

// image reads repo:tag's manifest and its layers' TOCs.
func (t *tocReader) image(ctx context.Context, name, repo, tag string) (imageTOCs, error) {
	img := imageTOCs{Name: name}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return img, err
	}
	req.Header.Set("Accept", imgspec.MediaTypeImageManifest+", application/vnd.docker.distribution.manifest.v2+json")
	b, err := t.get(req, http.StatusOK, 4<<20)
	if err != nil {
		return img, fmt.Errorf("manifest of %s:%s: %w", repo, tag, err)
	}
	var man imgspec.Manifest
	if err := json.Unmarshal(b, &man); err != nil {
		return img, fmt.Errorf("manifest of %s:%s: %w", repo, tag, err)
	}
	if len(man.Layers) == 0 {
		return img, fmt.Errorf("manifest of %s:%s: no layers (media type %q)", repo, tag, man.MediaType)
	}
	for _, l := range man.Layers {
		lt, ok := t.layers[l.Digest.String()]
		if !ok {
			if lt, err = t.layer(ctx, repo, l); err != nil {
				return img, fmt.Errorf("%s:%s: layer %s: %w", repo, tag, l.Digest, err)
			}
			t.layers[l.Digest.String()] = lt
		}
		img.Layers = append(img.Layers, lt)
	}
	return img, nil
}

// layer reads a zstd:chunked layer's TOC as c/storage's differ does:
// the range its manifest-position annotation names, checked against the
// TOC digest annotation, zstd-decompressed, JSON.
func (t *tocReader) layer(ctx context.Context, repo string, l imgspec.Descriptor) (layerTOC, error) {
	lt := layerTOC{Digest: l.Digest.String(), Size: l.Size}
	tocDigest, err := toc.GetTOCDigest(l.Annotations)
	if err != nil {
		return lt, err
	}
	pos, ok := l.Annotations[tocPositionKey]
	if tocDigest == nil || !ok {
		return lt, fmt.Errorf("no zstd:chunked TOC (annotations %v)", l.Annotations)
	}
	var off, length, ulen, typ int64
	if _, err := fmt.Sscanf(pos, "%d:%d:%d:%d", &off, &length, &ulen, &typ); err != nil {
		return lt, fmt.Errorf("TOC position %q: %w", pos, err)
	}
	if typ != tocTypeCRFS || off <= 0 || length <= 0 || off+length > l.Size || length > maxTOCBytes || ulen <= 0 || ulen > maxTOCBytes {
		return lt, fmt.Errorf("TOC position %q: not a TOC within the %d-byte blob", pos, l.Size)
	}
	lt.Meta = length
	if ts, ok := l.Annotations[tarSplitPositionKey]; ok {
		var tsOff, tsLen, tsUlen int64
		if _, err := fmt.Sscanf(ts, "%d:%d:%d", &tsOff, &tsLen, &tsUlen); err != nil || tsOff <= 0 || tsLen < 0 || tsOff+tsLen > l.Size {
			return lt, fmt.Errorf("tar-split position %q: not within the %d-byte blob (%v)", ts, l.Size, err)
		}
		lt.Meta += tsLen
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr+"/v2/"+repo+"/blobs/"+l.Digest.String(), nil)
	if err != nil {
		return lt, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	b, err := t.get(req, http.StatusPartialContent, length)
	if err != nil {
		return lt, fmt.Errorf("TOC: %w", err)
	}
	if int64(len(b)) != length {
		return lt, fmt.Errorf("TOC: %d bytes, want %d", len(b), length)
	}
	if got := digest.Canonical.FromBytes(b); got != *tocDigest {
		return lt, fmt.Errorf("TOC digest %s, the annotation says %s", got, *tocDigest)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(2*maxTOCBytes))
	if err != nil {
		return lt, err
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(b, make([]byte, 0, ulen))
	if err != nil {
		return lt, fmt.Errorf("TOC: %w", err)
	}
	if int64(len(raw)) != ulen {
		return lt, fmt.Errorf("TOC: %d bytes decompressed, the position annotation says %d", len(raw), ulen)
	}
	var doc struct {
		Version int        `json:"version"`
		Entries []tocEntry `json:"entries"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return lt, fmt.Errorf("TOC: %w", err)
	}
	lt.Entries = doc.Entries
	return lt, nil
}

// get does req and returns the body (at most limit bytes) when the
// status is want.
func (t *tocReader) get(req *http.Request, want int, limit int64) ([]byte, error) {
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %s: %.200s", req.Method, req.URL.Path, resp.Status, b)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s %s: more than %d bytes", req.Method, req.URL.Path, limit)
	}
	return b, nil
}
