package dedup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
)

// Refs file layout (refs/<layer-id>), little-endian:
//
//	0   8  magic "CFSREFS1"
//	8   4  count
//	12  4  reserved, 0
//	16  32*count  digests, sorted, unique
//	end 32 SHA-256 of everything before it
const (
	refsMagic   = "CFSREFS1"
	refsHeader  = 16
	refsTrailer = sha256.Size
	maxLayerID  = 255
)

func compareDigest(a, b Digest) int { return bytes.Compare(a[:], b[:]) }

// validLayerID checks that id is usable as a file name: 1-255 bytes of
// [A-Za-z0-9._-], not starting with '.'.
func validLayerID(id string) error {
	if id == "" || len(id) > maxLayerID || id[0] == '.' {
		return fmt.Errorf("%w: %q", ErrInvalidLayerID, id)
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %q", ErrInvalidLayerID, id)
		}
	}
	return nil
}

func encodeRefs(ds []Digest) []byte {
	b := make([]byte, refsHeader, refsHeader+32*len(ds)+refsTrailer)
	copy(b, refsMagic)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(ds)))
	for _, d := range ds {
		b = append(b, d[:]...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func decodeRefs(b []byte) ([]Digest, error) {
	if len(b) < refsHeader+refsTrailer || string(b[:8]) != refsMagic {
		return nil, fmt.Errorf("%w: bad header", ErrCorruptRefs)
	}
	n := int(binary.LittleEndian.Uint32(b[8:]))
	if len(b) != refsHeader+32*n+refsTrailer {
		return nil, fmt.Errorf("%w: length %d for %d digests", ErrCorruptRefs, len(b), n)
	}
	body := b[:len(b)-refsTrailer]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], b[len(body):]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptRefs)
	}
	ds := make([]Digest, n)
	for i := range ds {
		ds[i] = Digest(body[refsHeader+32*i:])
	}
	return ds, nil
}

// refsWrite carries the extras of a refs write made by Ingest.Commit.
type refsWrite struct {
	check bool         // verify each digest is present first
	after func() error // run after the refs file is in place, under the lock
}

// SetRefs registers digests as the complete set of objects layerID uses,
// replacing any previous set. Every digest must be present (an absent one
// gives ErrNotFound and nothing changes). Per the sync policy, objects are
// made durable first, so that after a crash a registered layer's objects
// are all there.
func (s *Store) SetRefs(ctx context.Context, layerID string, digests []Digest) error {
	ds := slices.Clone(digests)
	slices.SortFunc(ds, compareDigest)
	ds = slices.Compact(ds)
	if err := s.setRefs(ctx, layerID, ds, refsWrite{check: true}); err != nil {
		return fmt.Errorf("dedup: set refs of %s: %w", layerID, err)
	}
	return nil
}

// setRefs writes the refs file of layerID with the sorted, unique ds.
func (s *Store) setRefs(ctx context.Context, layerID string, ds []Digest, w refsWrite) error {
	if err := validLayerID(layerID); err != nil {
		return err
	}
	if err := s.syncObjects(); err != nil {
		return err
	}
	// The shared lock covers the temporary file too: GC removes leftover
	// ones under the exclusive lock.
	unlock, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	// Per the sync policy: data synced, renamed, directory synced. The
	// temporary file is refs/.tmp-*, the name GC removes.
	o := atomicfile.Options{Pattern: ".tmp-", Flush: atomicfile.FlushData, SyncDir: true}
	if s.opts.Sync == SyncNever {
		o.Flush, o.SyncDir = atomicfile.FlushNone, false
	}
	if w.check {
		o.BeforeRename = func(string) error {
			for _, d := range ds {
				if !s.Has(d) {
					return fmt.Errorf("object %s: %w", d, ErrNotFound)
				}
			}
			return nil
		}
	}
	if err := atomicfile.WriteFile(filepath.Join(s.root, dirRefs, layerID), encodeRefs(ds), o); err != nil {
		return err
	}
	if w.after != nil {
		return w.after()
	}
	return nil
}

// syncObjects makes every object linked so far durable, as refs may name
// any of them (objects of other sessions too): SyncBatch syncs the file
// system; under SyncEach they already are; SyncNever does nothing.
func (s *Store) syncObjects() error {
	if s.opts.Sync != SyncBatch {
		return nil
	}
	return s.syncFS()
}

// DropRefs removes layerID's refs: its objects become collectable unless
// another layer or an ingest in flight uses them. A layer without refs
// gives ErrNotFound.
func (s *Store) DropRefs(ctx context.Context, layerID string) error {
	if err := validLayerID(layerID); err != nil {
		return fmt.Errorf("dedup: drop refs: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dedup: drop refs of %s: %w", layerID, err)
	}
	dir := filepath.Join(s.root, dirRefs)
	err := os.Remove(filepath.Join(dir, layerID))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dedup: drop refs of %s: %w", layerID, ErrNotFound)
	}
	if err == nil {
		err = s.syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("dedup: drop refs of %s: %w", layerID, err)
	}
	return nil
}

// Refs returns the digests registered for layerID, sorted. A layer
// without refs gives ErrNotFound; a damaged refs file ErrCorruptRefs.
func (s *Store) Refs(layerID string) ([]Digest, error) {
	if err := validLayerID(layerID); err != nil {
		return nil, fmt.Errorf("dedup: refs: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(s.root, dirRefs, layerID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("dedup: refs of %s: %w", layerID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("dedup: refs of %s: %w", layerID, err)
	}
	ds, err := decodeRefs(b)
	if err != nil {
		return nil, fmt.Errorf("dedup: refs of %s: %w", layerID, err)
	}
	return ds, nil
}

// Layers returns the IDs of the layers that have refs, sorted.
func (s *Store) Layers() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, dirRefs))
	if err != nil {
		return nil, fmt.Errorf("dedup: list layers: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}
