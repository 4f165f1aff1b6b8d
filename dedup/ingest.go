package dedup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// pendingMagic starts every pending file; 33-byte records follow: a kind
// byte (pinPresent or pinCreated), then the digest.
const (
	pendingMagic  = "CFSPEND1"
	pendingRecord = 1 + 32
	pinPresent    = 'p' // the object was present (or is a hard link)
	pinCreated    = 'n' // this session created the object; not synced yet
)

// pendingRec is one record of a pending file.
type pendingRec struct {
	d       Digest
	created bool
}

// Ingest is an ingestion session: the objects it inserts or references
// are pinned (GC keeps them) from the moment Insert, InsertFile or Ref
// returns until Commit or Abort, or until the process dies.
//
// The pins live in pending/<session>, a file the session holds an
// exclusive flock on; a digest is appended to it, under the shared store
// lock, before the insert that makes the object live returns. GC, under
// the exclusive store lock, treats the digests of every pending file it
// cannot lock as live and deletes the pending files it can lock (their
// process is gone). This is the in-flight rule: a pending set, no grace
// period.
//
// An Ingest is safe for concurrent use by many goroutines.
type Ingest struct {
	s    *Store
	name string

	mu      sync.Mutex
	f       *os.File // nil once committed or aborted
	set     map[Digest]struct{}
	tent    map[Digest]int // pinned while a stream is verified (see pinExpected)
	created bool           // some object was created unsynced (SyncBatch)
}

// BeginIngest starts an ingestion session.
func (s *Store) BeginIngest(ctx context.Context) (*Ingest, error) {
	var id [12]byte
	rand.Read(id[:])
	name := filepath.Join(s.root, dirPending, hex.EncodeToString(id[:]))
	unlock, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("dedup: begin ingest: %w", err)
	}
	defer unlock()
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dedup: begin ingest: %w", err)
	}
	// Lock before releasing the store lock, so GC never sees the file
	// unlocked.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(name)
		return nil, fmt.Errorf("dedup: begin ingest: lock %s: %w", name, err)
	}
	if _, err := f.WriteString(pendingMagic); err != nil {
		f.Close()
		os.Remove(name)
		return nil, fmt.Errorf("dedup: begin ingest: %w", err)
	}
	return &Ingest{s: s, name: name, f: f, set: map[Digest]struct{}{}, tent: map[Digest]int{}}, nil
}

// pin adds d to the session's pending set; created says this session
// just created the object. The caller holds the store lock (shared).
func (in *Ingest) pin(d Digest, created bool) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.record(d, created); err != nil {
		return err
	}
	in.set[d] = struct{}{}
	return nil
}

// intend records, before an object is linked into place, that this
// session is creating it (a pinCreated record).
func (in *Ingest) intend(d Digest) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.record(d, true)
}

// admit adds d, whose record is already in the pending file, to the
// digests Commit registers.
func (in *Ingest) admit(d Digest) {
	in.mu.Lock()
	in.set[d] = struct{}{}
	in.mu.Unlock()
}

// record appends d to the pending file unless it is there already (a
// created record is always appended). The caller holds in.mu.
func (in *Ingest) record(d Digest, created bool) error {
	if in.f == nil {
		return ErrClosed
	}
	_, inSet := in.set[d]
	if (inSet || in.tent[d] > 0) && !created {
		return nil
	}
	var rec [pendingRecord]byte
	rec[0] = pinPresent
	if created {
		rec[0] = pinCreated
		in.created = in.created || in.s.opts.Sync == SyncBatch
	}
	copy(rec[1:], d[:])
	if _, err := in.f.Write(rec[:]); err != nil {
		return fmt.Errorf("record pending %s: %w", d, err)
	}
	return nil
}

// Ref pins an object that is already in the store (found with Has or
// LookupSHA256, say) so that GC keeps it until Commit. It fails with
// ErrNotFound if the object is absent. A digest this session pinned
// already (inserted or referenced) costs nothing: no lock, no record.
func (in *Ingest) Ref(ctx context.Context, d Digest) error {
	in.mu.Lock()
	_, pinned := in.set[d]
	in.mu.Unlock()
	if pinned {
		return nil // pinned by this session already: recorded, and Commit registers it
	}
	if err := in.pinPresent(ctx, d, false); err != nil {
		return fmt.Errorf("dedup: ref %s: %w", d, err)
	}
	return nil
}

// pinPresent pins d if the object is present, under the store lock; it
// fails with ErrNotFound otherwise. A tentative pin protects the object
// from GC but is not registered by Commit until confirmed by settle.
func (in *Ingest) pinPresent(ctx context.Context, d Digest, tentative bool) error {
	unlock, err := in.s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	if !in.s.Has(d) {
		return ErrNotFound
	}
	if !tentative {
		return in.pin(d, false)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.record(d, false); err != nil {
		return err
	}
	in.tent[d]++
	return nil
}

// settle ends a tentative pin of d, confirming it (Commit registers d)
// or not. An unconfirmed digest's record stays in the pending file, which
// only delays its collection until the session ends.
func (in *Ingest) settle(d Digest, confirm bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.tent[d]--; in.tent[d] <= 0 {
		delete(in.tent, d)
	}
	if confirm {
		in.set[d] = struct{}{}
	}
}

// Digests returns the session's pinned digests, sorted.
func (in *Ingest) Digests() []Digest {
	in.mu.Lock()
	defer in.mu.Unlock()
	ds := make([]Digest, 0, len(in.set))
	for d := range in.set {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, compareDigest)
	return ds
}

// Commit registers every digest the session pinned as the refs of
// layerID (replacing any previous refs of that layer), then ends the
// session. There is no moment between the two at which GC could delete
// them. Per the sync policy, objects are made durable first (an object
// another session linked may not be durable yet).
func (in *Ingest) Commit(ctx context.Context, layerID string) error {
	ds := in.Digests()
	in.mu.Lock()
	closed := in.f == nil
	in.mu.Unlock()
	if closed {
		return fmt.Errorf("dedup: commit %s: %w", layerID, ErrClosed)
	}
	err := in.s.setRefs(ctx, layerID, ds, refsWrite{after: in.end})
	if err != nil {
		return fmt.Errorf("dedup: commit %s: %w", layerID, err)
	}
	return nil
}

// Abort ends the session without registering anything: its objects
// become collectable unless some layer references them. Under SyncBatch,
// if the session created objects, the file system is synced first: once
// the pending file is gone nothing marks them as unsynced, and another
// session may find and reference them.
func (in *Ingest) Abort() error {
	in.mu.Lock()
	created := in.created && in.f != nil
	in.mu.Unlock()
	if created {
		if err := in.s.syncFS(); err != nil {
			return fmt.Errorf("dedup: abort ingest: %w", err)
		}
	}
	if err := in.end(); err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("dedup: abort ingest: %w", err)
	}
	return nil
}

// end removes the pending file, then releases its lock. Commit calls it
// after syncing; Abort syncs before calling it.
func (in *Ingest) end() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.f == nil {
		return ErrClosed
	}
	err := os.Remove(in.name)
	in.f.Close()
	in.f = nil
	in.s.flushCounters()
	return err
}

// readPending returns the records of a pending file. A torn final record
// (the process died mid-write) is ignored.
func readPending(data []byte) ([]pendingRec, error) {
	if len(data) < len(pendingMagic) {
		return nil, nil // died before writing the header: pins nothing
	}
	if string(data[:len(pendingMagic)]) != pendingMagic {
		return nil, fmt.Errorf("%w: bad pending header", ErrCorruptRefs)
	}
	data = data[len(pendingMagic):]
	recs := make([]pendingRec, 0, len(data)/pendingRecord)
	for len(data) >= pendingRecord {
		if data[0] != pinPresent && data[0] != pinCreated {
			return nil, fmt.Errorf("%w: bad pending record kind %q", ErrCorruptRefs, data[0])
		}
		recs = append(recs, pendingRec{Digest(data[1:pendingRecord]), data[0] == pinCreated})
		data = data[pendingRecord:]
	}
	return recs, nil
}
