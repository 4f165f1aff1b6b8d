package driver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	storage "go.podman.io/storage"
	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/chunked"
	"go.podman.io/storage/pkg/chunked/compressor"
	"go.podman.io/storage/pkg/chunked/toc"
	"go.podman.io/storage/types"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// partialStore opens a c/storage store on cfs with partial pulls enabled.
func partialStore(t *testing.T) (storage.Store, string) {
	t.Helper()
	dir := t.TempDir()
	store, err := storage.GetStore(types.StoreOptions{
		RunRoot:         filepath.Join(dir, "run"),
		GraphRoot:       filepath.Join(dir, "root"),
		GraphDriverName: Name,
		PullOptions:     map[string]string{"enable_partial_images": "true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Shutdown(true) })
	return store, filepath.Join(dir, "root", Name)
}

// zstdChunked compresses a layer tar as zstd:chunked.
func zstdChunked(t *testing.T, tarball []byte) ([]byte, map[string]string) {
	t.Helper()
	var blob bytes.Buffer
	annotations := map[string]string{}
	w, err := compressor.ZstdCompressor(&blob, annotations, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(tarball); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return blob.Bytes(), annotations
}

// blobFetcher serves ranges of a blob, counting the bytes served;
// mangle, if set, may change what a range of file data returns.
type blobFetcher struct {
	blob    []byte
	dataEnd uint64 // where file data ends (the manifest's offset)
	fetched atomic.Int64
	mangle  func(data []byte) []byte
}

func newFetcher(t *testing.T, blob []byte, annotations map[string]string) *blobFetcher {
	pos := strings.Split(annotations["io.github.containers.zstd-chunked.manifest-position"], ":")
	end, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil {
		t.Fatalf("manifest position %q: %v", annotations, err)
	}
	return &blobFetcher{blob: blob, dataEnd: end}
}

func (f *blobFetcher) GetBlobAt(chunks []chunked.ImageSourceChunk) (chan io.ReadCloser, chan error, error) {
	streams, errs := make(chan io.ReadCloser), make(chan error)
	go func() {
		defer close(streams)
		defer close(errs)
		for _, c := range chunks {
			if c.Offset > uint64(len(f.blob)) || c.Length > uint64(len(f.blob))-c.Offset {
				// What a registry answers with 416 (Range Not Satisfiable).
				errs <- errors.New("range outside the blob")
				return
			}
			data := append([]byte(nil), f.blob[c.Offset:c.Offset+c.Length]...)
			if f.mangle != nil && c.Offset < f.dataEnd {
				data = f.mangle(data)
			}
			f.fetched.Add(int64(len(data)))
			streams <- io.NopCloser(bytes.NewReader(data))
		}
	}()
	return streams, errs, nil
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomText(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// partialPull pulls tarball, compressed as zstd:chunked, through
// fetcher (made by newFetcher when nil) as a layer on parent.
func partialPull(t *testing.T, store storage.Store, parent string, tarball []byte, setup func(*blobFetcher)) (*storage.Layer, *blobFetcher, error) {
	t.Helper()
	blob, annotations := zstdChunked(t, tarball)
	f := newFetcher(t, blob, annotations)
	if setup != nil {
		setup(f)
	}
	layer, err := pullBlob(t, store, parent, blob, annotations, digest.FromBytes(tarball), f)
	return layer, f, err
}

// errDiffID is what pullBlob returns, as c/image does, when the staged
// layer's DiffID is not the one expected (the image config's).
var errDiffID = errors.New("staged DiffID is not the config's")

// pullBlob pulls a zstd:chunked blob with its annotations through f as
// a layer on parent, the way c/image does: NewDiffer, PrepareStagedLayer,
// the DiffID check against the config's (diffID), ApplyStagedLayer; any
// failure is returned and what was staged cleaned up.
func pullBlob(t *testing.T, store storage.Store, parent string, blob []byte, annotations map[string]string, diffID digest.Digest, f *blobFetcher) (*storage.Layer, error) {
	t.Helper()
	differ, err := chunked.NewDiffer(context.Background(), store, digest.FromBytes(blob), int64(len(blob)), annotations, f)
	if err != nil {
		return nil, err
	}
	defer differ.Close()
	out, err := store.PrepareStagedLayer(nil, differ)
	if err != nil {
		return nil, err
	}
	if out.UncompressedDigest != diffID {
		store.CleanupStagedLayer(out)
		return nil, fmt.Errorf("%w: %s, want %s", errDiffID, out.UncompressedDigest, diffID)
	}
	layer, err := store.ApplyStagedLayer(storage.ApplyStagedLayerOptions{
		ID: randomID(), ParentLayer: parent, DiffOutput: out,
		DiffOptions: &graphdriver.ApplyDiffWithDifferOpts{},
	})
	if err != nil {
		store.CleanupStagedLayer(out)
		return nil, err
	}
	tocDigest, err := toc.GetTOCDigest(annotations)
	if err != nil || tocDigest == nil || layer.TOCDigest != *tocDigest {
		t.Errorf("layer TOC digest %q, want %v (%v)", layer.TOCDigest, tocDigest, err)
	}
	return layer, nil
}

// TestPartialPull: a zstd:chunked layer pulled through the differ (c/storage's
// pkg/chunked, ranged reads) becomes a cfs layer whose mount shows the
// tar's files, whose diff is the original tar, whose TOC digest is
// recorded; a second layer sharing a big file with the first fetches
// only what is new (the shared file is taken from the first layer's
// flat directory, never fetched); nothing is left staged.
func TestPartialPull(t *testing.T) {
	testutil.RequireRoot(t)
	store, home := partialStore(t)
	shared, own1, own2 := randomText(256<<10), randomText(64<<10), randomText(64<<10)
	tar1 := mustTar(t, tarfix.Dir("usr/"), tarfix.File("usr/shared", shared), tarfix.File("usr/own1", own1),
		tarfix.File("small", "tiny"), tarfix.Symlink("link", "usr/own1"), tarfix.Hardlink("usr/hard", "usr/own1"),
		tarfix.FileMode("usr/exec", own1[:100], 0o755, 12, 34))
	l1, f1, err := partialPull(t, store, "", tar1, nil)
	if err != nil {
		t.Fatalf("partial pull: %v", err)
	}
	mnt, err := store.Mount(l1.ID, "")
	must(t, err)
	expectFile(t, filepath.Join(mnt, "usr/shared"), shared)
	expectFile(t, filepath.Join(mnt, "usr/hard"), own1)
	expectFile(t, filepath.Join(mnt, "link"), own1)
	expectFile(t, filepath.Join(mnt, "small"), "tiny")
	if st, err := os.Stat(filepath.Join(mnt, "usr/exec")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("usr/exec: %v %v", st, err)
	}
	_, err = store.Unmount(l1.ID, true)
	must(t, err)
	// The diff is the original tar (tar-split and the stored contents).
	rc, err := store.Diff("", l1.ID, &storage.DiffOptions{Compression: nil})
	must(t, err)
	got, err := io.ReadAll(rc)
	rc.Close()
	must(t, err)
	if digest.FromBytes(got) != digest.FromBytes(tar1) {
		t.Errorf("diff of the partially pulled layer is not its original tar (%d bytes, want %d)", len(got), len(tar1))
	}

	// The second layer, on the first: the shared file is not fetched.
	tar2 := mustTar(t, tarfix.Dir("opt/"), tarfix.File("opt/copy-of-shared", shared), tarfix.File("opt/own2", own2))
	l2, f2, err := partialPull(t, store, l1.ID, tar2, nil)
	if err != nil {
		t.Fatalf("second partial pull: %v", err)
	}
	// The same layer pulled into an empty store fetches it all.
	fresh, _ := partialStore(t)
	_, f3, err := partialPull(t, fresh, "", tar2, nil)
	must(t, err)
	t.Logf("fetched: first layer %d, second %d (into an empty store %d)", f1.fetched.Load(), f2.fetched.Load(), f3.fetched.Load())
	if f2.fetched.Load() > f3.fetched.Load()-int64(len(shared))/2 {
		t.Errorf("second layer fetched %d bytes, %d into an empty store: the shared %d bytes were fetched again", f2.fetched.Load(), f3.fetched.Load(), len(shared))
	}
	mnt, err = store.Mount(l2.ID, "")
	must(t, err)
	expectFile(t, filepath.Join(mnt, "opt/copy-of-shared"), shared)
	expectFile(t, filepath.Join(mnt, "usr/shared"), shared)
	expectFile(t, filepath.Join(mnt, "opt/own2"), own2)
	_, err = store.Unmount(l2.ID, true)
	must(t, err)
	if names, _ := readDirNames(filepath.Join(home, "tmp")); len(names) != 0 {
		t.Errorf("left in tmp: %q", names)
	}
}

// TestPartialPullBadRanges: a registry that corrupts or truncates the
// ranges of file data gives an error and stores nothing.
func TestPartialPullBadRanges(t *testing.T) {
	testutil.RequireRoot(t)
	for name, mangle := range map[string]func([]byte) []byte{
		// One flipped byte in 256: a single one can land where nothing
		// reads it (a frame's padding), and the pull rightly succeeds.
		"corrupt": func(b []byte) []byte {
			for i := 0; i < len(b); i += 256 {
				b[i] ^= 0xff
			}
			return b
		},
		"truncate": func(b []byte) []byte { return b[:len(b)/2] },
	} {
		t.Run(name, func(t *testing.T) {
			store, home := partialStore(t)
			tarball := mustTar(t, tarfix.File("a", randomText(128<<10)), tarfix.File("b", randomText(128<<10)))
			_, _, err := partialPull(t, store, "", tarball, func(f *blobFetcher) { f.mangle = mangle })
			if err == nil {
				t.Fatal("a pull with mangled ranges succeeded")
			}
			t.Logf("error: %v", err)
			if ls, _ := store.Layers(); len(ls) != 0 {
				t.Errorf("layers stored: %d", len(ls))
			}
			if names, _ := readDirNames(filepath.Join(home, "tmp")); len(names) != 0 {
				t.Errorf("left in tmp: %q", names)
			}
			if n := countObjects(t, filepath.Join(home, "objects")); n != 0 {
				t.Errorf("%d objects stored", n)
			}
		})
	}
}

func countObjects(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// tocEntry is a zstd:chunked TOC entry as pkg/chunked/internal/minimal
// writes it (FileMetadata), for tests that craft TOCs.
type tocEntry struct {
	Type        string            `json:"type"`
	Name        string            `json:"name"`
	Linkname    string            `json:"linkName,omitempty"`
	Mode        int64             `json:"mode,omitempty"`
	Size        int64             `json:"size,omitempty"`
	UID         int               `json:"uid,omitempty"`
	GID         int               `json:"gid,omitempty"`
	ModTime     *time.Time        `json:"modtime,omitempty"`
	AccessTime  *time.Time        `json:"accesstime,omitempty"`
	ChangeTime  *time.Time        `json:"changetime,omitempty"`
	Devmajor    int64             `json:"devMajor,omitempty"`
	Devminor    int64             `json:"devMinor,omitempty"`
	Xattrs      map[string]string `json:"xattrs,omitempty"`
	Digest      string            `json:"digest,omitempty"`
	Offset      int64             `json:"offset,omitempty"`
	EndOffset   int64             `json:"endOffset,omitempty"`
	ChunkSize   int64             `json:"chunkSize,omitempty"`
	ChunkOffset int64             `json:"chunkOffset,omitempty"`
	ChunkDigest string            `json:"chunkDigest,omitempty"`
	ChunkType   string            `json:"chunkType,omitempty"`
}

type tocDoc struct {
	Version        int        `json:"version"`
	Entries        []tocEntry `json:"entries"`
	TarSplitDigest string     `json:"tarSplitDigest,omitempty"`
}

// entry returns the first TOC entry named name.
func (d *tocDoc) entry(t *testing.T, name string) *tocEntry {
	t.Helper()
	for i := range d.Entries {
		if d.Entries[i].Name == name {
			return &d.Entries[i]
		}
	}
	t.Fatalf("no TOC entry %q", name)
	return nil
}

// blobPositions reads the manifest and tar-split positions (offset,
// compressed length) the annotations give.
func blobPositions(t *testing.T, annotations map[string]string) (mOff, mLen, tsOff, tsLen, tsULen uint64) {
	t.Helper()
	var mULen, mType uint64
	if _, err := fmt.Sscanf(annotations["io.github.containers.zstd-chunked.manifest-position"], "%d:%d:%d:%d", &mOff, &mLen, &mULen, &mType); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscanf(annotations["io.github.containers.zstd-chunked.tarsplit-position"], "%d:%d:%d", &tsOff, &tsLen, &tsULen); err != nil {
		t.Fatal(err)
	}
	return
}

// readTOC decodes the TOC of a zstd:chunked blob.
func readTOC(t *testing.T, blob []byte, annotations map[string]string) tocDoc {
	t.Helper()
	mOff, mLen, _, _, _ := blobPositions(t, annotations)
	dec, err := zstd.NewReader(nil)
	must(t, err)
	defer dec.Close()
	raw, err := dec.DecodeAll(blob[mOff:mOff+mLen], nil)
	must(t, err)
	var doc tocDoc
	must(t, json.Unmarshal(raw, &doc))
	return doc
}

// renameInTarSplit returns the (uncompressed) tar-split of a
// zstd:chunked blob with the entry from renamed to to: its file entry
// and the name in its header block.
func renameInTarSplit(t *testing.T, blob []byte, annotations map[string]string, from, to string) []byte {
	t.Helper()
	_, _, tsOff, tsLen, _ := blobPositions(t, annotations)
	dec, err := zstd.NewReader(nil)
	must(t, err)
	defer dec.Close()
	raw, err := dec.DecodeAll(blob[tsOff:tsOff+tsLen], nil)
	must(t, err)
	field := func(name string) []byte { return append([]byte(name), make([]byte, 100-len(name))...) }
	var out bytes.Buffer
	jd, je := json.NewDecoder(bytes.NewReader(raw)), json.NewEncoder(&out)
	renamed := 0
	for {
		var e tsstorage.Entry
		if err := jd.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if e.Type == tsstorage.SegmentType {
			if i := bytes.Index(e.Payload, field(from)); i >= 0 && i+512 <= len(e.Payload) {
				copy(e.Payload[i:], field(to))
				tarfix.FixChecksum(e.Payload[i : i+512])
				renamed++
			}
		} else if e.Name == from {
			e.Name = to
			renamed++
		}
		must(t, je.Encode(&e))
	}
	if renamed != 2 {
		t.Fatalf("tar-split: renamed %d places for %q, want 2 (header, file)", renamed, from)
	}
	return out.Bytes()
}

// withTOC rewrites a zstd:chunked blob with doc as its TOC, consistently
// (as compressor.ZstdCompressor lays it out: file data, the TOC and the
// tar-split as skippable frames, the footer), and returns it with its
// annotations (TOC digest and positions). With newTarSplit (uncompressed)
// the tar-split is replaced too, and the TOC's tarSplitDigest with it.
func withTOC(t *testing.T, blob []byte, annotations map[string]string, doc tocDoc, newTarSplit []byte) ([]byte, map[string]string) {
	t.Helper()
	mOff, _, tsOff, tsLen, tsULen := blobPositions(t, annotations)
	enc, err := zstd.NewWriter(nil)
	must(t, err)
	defer enc.Close()
	tarSplit := blob[tsOff : tsOff+tsLen]
	if newTarSplit != nil {
		tarSplit = enc.EncodeAll(newTarSplit, nil)
		tsLen, tsULen = uint64(len(tarSplit)), uint64(len(newTarSplit))
		doc.TarSplitDigest = digest.FromBytes(tarSplit).String()
	}
	raw, err := json.Marshal(doc)
	must(t, err)
	manifest := enc.EncodeAll(raw, nil)

	var out bytes.Buffer
	skippable := func(data []byte) {
		out.Write([]byte{0x50, 0x2a, 0x4d, 0x18})
		binary.Write(&out, binary.LittleEndian, uint32(len(data)))
		out.Write(data)
	}
	out.Write(blob[:mOff-8])
	newMOff := uint64(out.Len()) + 8
	skippable(manifest)
	newTSOff := uint64(out.Len()) + 8
	skippable(tarSplit)
	footer := make([]byte, 64)
	for i, v := range []uint64{newMOff, uint64(len(manifest)), uint64(len(raw)), 1, newTSOff, tsLen, tsULen} {
		binary.LittleEndian.PutUint64(footer[8*i:], v)
	}
	copy(footer[56:], "GNUlInUx")
	skippable(footer)

	ann := maps.Clone(annotations)
	ann["io.github.containers.zstd-chunked.manifest-checksum"] = digest.FromBytes(manifest).String()
	ann["io.github.containers.zstd-chunked.manifest-position"] = fmt.Sprintf("%d:%d:%d:1", newMOff, len(manifest), len(raw))
	ann["io.github.containers.zstd-chunked.tarsplit-position"] = fmt.Sprintf("%d:%d:%d", newTSOff, tsLen, tsULen)
	return out.Bytes(), ann
}

// testCore gives tests the core behind a store's driver.
func (a *adapter[F]) testCore() *core { return a.c }

// TestPartialPullLyingTOC: a zstd:chunked layer whose TOC lies is
// refused with an error naming the problem, and leaves no layer, no
// staging directory, no object once the store is collected (a refused
// apply's objects are unreferenced, as a refused full pull's:
// TestHostileTar), and nothing outside the store. Each case records who
// refuses it:
//   - c/storage's differ (pkg/chunked), at NewDiffer (it reads the TOC
//     and the tar-split, checks them against the TOC digest annotation
//     and each other) or in PrepareStagedLayer (it fetches and checks
//     every file against its TOC digest);
//   - the registry: c/storage does not check ranges against the blob's
//     size, the registry refuses them (416; the test's fetcher does the
//     same);
//   - cfs, in ApplyDiffFromStagingDirectory: the flat staging is named
//     by digest, so names reach the filesystem nowhere in the differ;
//     cfs's ingest of the tar rebuilt from the tar-split checks every
//     name as a full pull does.
//
// None of the errors asks c/image to fall back to a full pull: podman
// refuses the layer (and so the image).
//
// Two lies are harmless and accepted, the layer then being exactly its
// tar: chunk digests (read only to find chunks in other layers through
// reflinks, which cfs does not ask for; each file is still checked
// against its own digest) and an absolute name with ".." ("/d/../../x"
// is "/x" under the root, for cfs as for a full pull into overlay).
func TestPartialPullLyingTOC(t *testing.T) {
	testutil.RequireRoot(t)
	a, b, c := randomText(64<<10), randomText(64<<10), randomText(64<<10)
	files := func(string) []tarfix.Entry {
		return []tarfix.Entry{tarfix.Dir("d/"), tarfix.File("d/a", a), tarfix.File("s", "short"), tarfix.File("b", b)}
	}
	bc := func(string) []tarfix.Entry { return []tarfix.Entry{tarfix.File("b", b), tarfix.File("c", c)} }
	const checksumKey = "io.github.containers.zstd-chunked.manifest-checksum"

	type lie struct {
		name     string
		entries  func(sentinel string) []tarfix.Entry // the layer's tar (files when nil)
		edit     func(t *testing.T, d *tocDoc)        // the TOC's lie
		rename   [2]string                            // an entry renamed in the TOC and the tar-split too
		keepTOC  bool                                 // the annotations keep the original TOC digest
		ann      func(ann map[string]string)          // the annotations' lie
		want     string                               // in the error
		who      string                               // who refuses
		accepted bool                                 // a harmless lie: the pull succeeds
	}
	lies := []lie{
		// (1) Digests.
		{
			name: "file digest wrong",
			edit: func(t *testing.T, d *tocDoc) { d.entry(t, "d/a").Digest = digest.FromString(b).String() },
			want: "checksum mismatch", who: "c/storage differ (PrepareStagedLayer)",
		},
		{
			// Each file has the other's digest: fetched content is
			// checked against the digest of its own entry.
			name: "file digests swapped",
			edit: func(t *testing.T, d *tocDoc) {
				ea, eb := d.entry(t, "d/a"), d.entry(t, "b")
				ea.Digest, eb.Digest = eb.Digest, ea.Digest
			},
			want: "checksum mismatch", who: "c/storage differ (PrepareStagedLayer)",
		},
		{
			name: "chunk digests wrong",
			edit: func(t *testing.T, d *tocDoc) {
				for i := range d.Entries {
					if d.Entries[i].ChunkDigest != "" {
						d.Entries[i].ChunkDigest = digest.FromString(strconv.Itoa(i)).String()
					}
				}
			},
			accepted: true, who: "nobody: unused (see above)",
		},
		// (2) Offsets and sizes: outside the blob, or at other data.
		{
			name: "offset past the blob",
			edit: func(t *testing.T, d *tocDoc) { e := d.entry(t, "s"); e.Offset += 1 << 30; e.EndOffset += 1 << 30 },
			want: "range outside the blob", who: "the registry (GetBlobAt, in PrepareStagedLayer)",
		},
		{
			name: "chunk offset past the blob",
			edit: func(t *testing.T, d *tocDoc) {
				for i := range d.Entries {
					if d.Entries[i].Name == "d/a" && d.Entries[i].Type == "chunk" {
						d.Entries[i].Offset = 1 << 30
					}
				}
			},
			// The differ asks for a file's chunks as one merged range,
			// from the first chunk's offset to the file's end
			// (mergeMissingChunks): the lying offsets in between are
			// never requested, the range is the file's real data, and
			// its content is checked against the file's digest.
			accepted: true, who: "nobody: the ranges are merged",
		},
		{
			name: "end offset past the blob",
			edit: func(t *testing.T, d *tocDoc) { d.entry(t, "s").EndOffset = 1 << 30 },
			want: "range outside the blob", who: "the registry (GetBlobAt, in PrepareStagedLayer)",
		},
		{
			// A negative length. c/storage merges it with the ranges
			// around it and decompresses what it gets: the error is
			// the zstd decoder's ("invalid input: magic number
			// mismatch"), not one naming the lie, so only the failure
			// is asserted.
			name: "end offset before offset",
			edit: func(t *testing.T, d *tocDoc) { e := d.entry(t, "s"); e.EndOffset = e.Offset - 1 },
			want: "", who: "c/storage differ (PrepareStagedLayer: decompression)",
		},
		{
			name: "offset of another file",
			edit: func(t *testing.T, d *tocDoc) {
				// s's range is b's first chunk (whole zstd frames).
				es, eb := d.entry(t, "s"), d.entry(t, "b")
				es.Offset, es.EndOffset = eb.Offset, eb.EndOffset
				for _, e := range d.Entries {
					if e.Name == "b" && e.Type == "chunk" {
						es.EndOffset = e.Offset
						break
					}
				}
			},
			want: "checksum mismatch", who: "c/storage differ (PrepareStagedLayer)",
		},
		{
			name: "file size wrong",
			edit: func(t *testing.T, d *tocDoc) { d.entry(t, "s").Size = 1 << 20 },
			want: "mismatch of Size", who: "c/storage differ (NewDiffer: the TOC against the tar-split)",
		},
		// (3) Duplicate entries for one path.
		{
			name: "duplicate in the TOC",
			edit: func(t *testing.T, d *tocDoc) { d.Entries = append(d.Entries, *d.entry(t, "b")) },
			want: `TOC contains duplicate entries for path "b"`, who: "c/storage differ (NewDiffer)",
		},
		{
			// tar-split's packer refuses such a tar, so the tar-split
			// is rewritten: "c" renamed "b" in it and in the TOC.
			name: "duplicate in the TOC and the tar-split", entries: bc, rename: [2]string{"c", "b"},
			want: `TOC contains duplicate entries for path "b"`, who: "c/storage differ (NewDiffer)",
		},
		{
			// Not the same name to the TOC check; tar-split's unpacker
			// (reading the tar-split against the TOC) cleans names.
			name: "one path spelled twice", entries: bc, rename: [2]string{"c", "./b"},
			want: "duplicates of file paths not supported", who: "c/storage differ (NewDiffer: tar-split's unpacker)",
		},
		// (4) Paths escaping the root.
		{
			name: "TOC name escapes, tar-split not",
			edit: func(t *testing.T, d *tocDoc) { d.entry(t, "b").Name = "../b" },
			want: "tar-split and TOC data is inconsistent", who: "c/storage differ (NewDiffer)",
		},
		{
			name:    "../x",
			entries: func(string) []tarfix.Entry { return []tarfix.Entry{tarfix.File("../x", a)} },
			want:    "name climbs above the layer root", who: "cfs (ApplyDiffFromStagingDirectory)",
		},
		{
			name:    "d/../../x",
			entries: func(string) []tarfix.Entry { return []tarfix.Entry{tarfix.Dir("d/"), tarfix.File("d/../../x", a)} },
			want:    "name climbs above the layer root", who: "cfs (ApplyDiffFromStagingDirectory)",
		},
		{
			name: "absolute with ..",
			entries: func(sentinel string) []tarfix.Entry {
				return []tarfix.Entry{tarfix.File("/d/../../x", a), tarfix.File("/../.."+sentinel+"/y", b)}
			},
			accepted: true, who: "nobody: the names are under the root",
		},
		{
			name: "file under a symlink out",
			entries: func(sentinel string) []tarfix.Entry {
				return []tarfix.Entry{tarfix.Symlink("evil", sentinel), tarfix.File("evil/pwned", a)}
			},
			want: "not a directory", who: "cfs (ApplyDiffFromStagingDirectory)",
		},
		{
			name: "file under a relative symlink out",
			entries: func(sentinel string) []tarfix.Entry {
				return []tarfix.Entry{tarfix.Symlink("up", "../../../../../../../.."), tarfix.File("up"+sentinel+"/pwned", a)}
			},
			want: "not a directory", who: "cfs (ApplyDiffFromStagingDirectory)",
		},
		{
			name: "hard link out",
			entries: func(string) []tarfix.Entry {
				return []tarfix.Entry{tarfix.File("b", b), tarfix.Hardlink("h", "../../b")}
			},
			want: "name climbs above the layer root", who: "cfs (ApplyDiffFromStagingDirectory)",
		},
		// (5) The TOC digest annotation.
		{
			name: "TOC digest annotation wrong",
			ann:  func(ann map[string]string) { ann[checksumKey] = digest.FromString("another TOC").String() },
			want: "invalid blob checksum", who: "c/storage differ (NewDiffer)",
		},
		{
			name:    "TOC changed, annotation kept",
			edit:    func(t *testing.T, d *tocDoc) { d.entry(t, "s").Mode = 0o4755 },
			keepTOC: true,
			want:    "invalid blob checksum", who: "c/storage differ (NewDiffer)",
		},
		{
			name: "TOC digest annotation not a digest",
			ann:  func(ann map[string]string) { ann[checksumKey] = "sha256:xyz" },
			want: "invalid checksum digest", who: "c/storage differ (NewDiffer)",
		},
	}
	for _, l := range lies {
		t.Run(strings.ReplaceAll(l.name, "/", "_"), func(t *testing.T) {
			store, home := partialStore(t)
			sentinel := t.TempDir() // outside the store
			entries := files
			if l.entries != nil {
				entries = l.entries
			}
			tarball := mustTar(t, entries(sentinel)...)
			blob, annotations := zstdChunked(t, tarball)
			orig := maps.Clone(annotations)
			if l.edit != nil || l.rename[0] != "" {
				doc := readTOC(t, blob, annotations)
				var tarSplit []byte
				if from, to := l.rename[0], l.rename[1]; from != "" {
					doc.entry(t, from).Name = to
					for i := range doc.Entries {
						if doc.Entries[i].Name == from && doc.Entries[i].Type == "chunk" {
							doc.Entries[i].Name = to
						}
					}
					tarSplit = renameInTarSplit(t, blob, annotations, from, to)
				}
				if l.edit != nil {
					l.edit(t, &doc)
				}
				blob, annotations = withTOC(t, blob, annotations, doc, tarSplit)
			}
			if l.keepTOC {
				annotations[checksumKey] = orig[checksumKey]
			}
			if l.ann != nil {
				l.ann(annotations)
			}
			layer, err := pullBlob(t, store, "", blob, annotations, digest.FromBytes(tarball), newFetcher(t, blob, annotations))
			if names, _ := readDirNames(sentinel); len(names) != 0 {
				t.Errorf("written outside the store: %q", names)
			}
			if names, _ := readDirNames(filepath.Join(home, "tmp")); len(names) != 0 {
				t.Errorf("left in tmp: %q", names)
			}
			if l.accepted {
				if err != nil {
					t.Fatalf("harmless lie refused: %v", err)
				}
				t.Logf("accepted (%s)", l.who)
				rc, err := store.Diff("", layer.ID, &storage.DiffOptions{Compression: nil})
				must(t, err)
				got, err := io.ReadAll(rc)
				rc.Close()
				must(t, err)
				if digest.FromBytes(got) != digest.FromBytes(tarball) {
					t.Errorf("the layer's diff is not its tar")
				}
				return
			}
			if err == nil {
				t.Fatalf("a layer whose TOC lies (%s) was pulled", l.name)
			}
			t.Logf("refused by %s: %v", l.who, err)
			if !strings.Contains(err.Error(), l.want) { // "" where c/storage names no problem
				t.Errorf("error %q does not say %q", err, l.want)
			}
			if _, ok := errors.AsType[chunked.ErrFallbackToOrdinaryLayerDownload](err); ok {
				t.Errorf("the error asks for a fallback to a full pull: %v", err)
			}
			if ls, _ := store.Layers(); len(ls) != 0 {
				t.Errorf("layers stored: %d", len(ls))
			}
			d, err := store.GraphDriver()
			must(t, err)
			objects := d.(interface{ testCore() *core }).testCore().contents.objects
			_, err = objects.GC(context.Background())
			must(t, err)
			if n := countObjects(t, filepath.Join(home, "objects")); n != 0 {
				t.Errorf("%d objects stored (after GC)", n)
			}
		})
	}
}
