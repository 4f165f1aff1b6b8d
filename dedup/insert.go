package dedup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// Object describes one inserted object.
type Object struct {
	// Digest is the object's name, its fs-verity digest.
	Digest Digest
	// SHA256 is the plain SHA-256 of the content (zero when
	// InsertOptions.NoSHA256 was set).
	SHA256 SHA256
	// Size is the content length in bytes.
	Size int64
	// Existed is true when the store already held the object: nothing
	// was kept from this insert.
	Existed bool
	// Linked is how an Alternate source stored a new object (LinkHardlink,
	// LinkReflink or LinkCopy); zero (LinkAuto) when it was not used.
	Linked LinkMode
}

// InsertOptions tune one insert. The zero value computes both digests and
// writes the content unless the object turns out to exist.
type InsertOptions struct {
	// Digest, if set, is the expected fs-verity digest. When the object
	// is present, the stream is only hashed (nothing is written). A
	// stream that does not match gives ErrDigestMismatch and nothing is
	// kept.
	Digest *Digest
	// SHA256, if set, is the expected plain SHA-256 (from a zstd:chunked
	// table of contents, say). When the index maps it to a present
	// object, the stream is only hashed. A mismatch gives
	// ErrDigestMismatch and nothing is kept.
	SHA256 *SHA256
	// NoSHA256 skips the plain SHA-256 (and the index entry): for
	// callers that never look content up by SHA-256. Ignored when SHA256
	// is set.
	NoSHA256 bool
	// Alternate, when set, is asked once the content's digest is known
	// and the object is absent: it may find an existing file with that
	// content (a host ostree object, say), which is then linked in with
	// AlternateMode as InsertFile would (after comparing it byte for
	// byte with the streamed content) instead of writing the streamed
	// bytes. When it finds none, fails, or its file cannot be linked in,
	// the streamed bytes are written as usual (Stats.Alternates counts
	// such lookups).
	Alternate Alternate
	// AlternateMode is the link mode for Alternate files (LinkAuto: hard
	// link, else reflink, else copy).
	AlternateMode LinkMode
	// TrustAlternate links an Alternate's file without comparing it with
	// the streamed content (its size is still checked): for an Alternate
	// that has proven the file holds the content by a content checksum
	// it trusts, such as a host ostree repository's object names, so
	// that the file is not read at all.
	TrustAlternate bool
}

// hashers computes the fs-verity digest and, optionally, the SHA-256 of
// the same bytes.
type hashers struct {
	verity *fsverity.Hasher
	sha    hash.Hash // nil when not wanted
	size   int64
}

func newHashers(wantSHA bool) *hashers {
	h := &hashers{verity: fsverity.New()}
	if wantSHA {
		h.sha = sha256.New()
	}
	return h
}

// Write hashes p with both digests.
func (h *hashers) Write(p []byte) (int, error) {
	h.verity.Write(p)
	if h.sha != nil {
		h.sha.Write(p)
	}
	h.size += int64(len(p))
	return len(p), nil
}

// object returns the digests of what was written, checked against opts.
func (h *hashers) object(opts InsertOptions) (Object, error) {
	o := Object{Digest: Digest(h.verity.Sum32()), Size: h.size}
	if h.sha != nil {
		h.sha.Sum(o.SHA256[:0])
	}
	if opts.Digest != nil && *opts.Digest != o.Digest {
		return o, fmt.Errorf("%w: fs-verity digest is %s, expected %s", ErrDigestMismatch, o.Digest, *opts.Digest)
	}
	if opts.SHA256 != nil && *opts.SHA256 != o.SHA256 {
		return o, fmt.Errorf("%w: sha256 is %s, expected %s", ErrDigestMismatch, o.SHA256, *opts.SHA256)
	}
	return o, nil
}

// Insert adds the content read from r to the store, pinned until the
// Store is closed (see Ingest for pins that end sooner).
func (s *Store) Insert(ctx context.Context, r io.Reader, opts InsertOptions) (Object, error) {
	in, err := s.defaultIngest(ctx)
	if err != nil {
		return Object{}, fmt.Errorf("dedup: insert: %w", err)
	}
	return in.Insert(ctx, r, opts)
}

// Insert adds the content read from r to the store and pins it in this
// session. Content up to Options.SmallThreshold is hashed in memory first
// and written only if new; larger content is streamed once into an
// unnamed temporary file while it is hashed, and linked under its final
// name only if new (the temporary file is dropped otherwise). An object
// never appears under its final name before it is complete.
func (in *Ingest) Insert(ctx context.Context, r io.Reader, opts InsertOptions) (Object, error) {
	o, err := in.insert(ctx, r, opts)
	if err != nil {
		return o, fmt.Errorf("dedup: insert: %w", err)
	}
	return o, nil
}

func (in *Ingest) insert(ctx context.Context, r io.Reader, opts InsertOptions) (Object, error) {
	s := in.s
	if err := ctx.Err(); err != nil {
		return Object{}, err
	}
	h := newHashers(!opts.NoSHA256 || opts.SHA256 != nil)
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		h.Write(buf[:n])
		o, err := h.object(opts)
		if err != nil {
			return o, err
		}
		if opts.Alternate != nil { // (a reader for it costs an allocation)
			if lo, ok := in.tryAlternate(ctx, o, bytes.NewReader(buf[:n]), opts); ok {
				return lo, nil
			}
		}
		return in.finish(ctx, o, nil, buf[:n], LinkWritten)
	}
	if err != nil {
		return Object{}, fmt.Errorf("read: %w", err)
	}
	sp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(sp)
	if d, ok := in.pinExpected(ctx, opts); ok {
		return in.verifyPresent(ctx, d, h, buf, *sp, r, opts)
	}
	tmp, err := s.createTemp()
	if err != nil {
		return Object{}, err
	}
	defer tmp.discard()
	sw := &sparseWriter{f: tmp.f}
	if err := h.copyHashing(ctx, sw, buf, *sp, r); err != nil {
		return Object{}, err
	}
	if err := sw.finish(); err != nil {
		return Object{}, err
	}
	o, err := h.object(opts)
	if err != nil {
		return o, err
	}
	if lo, ok := in.tryAlternate(ctx, o, tmp.f, opts); ok {
		return lo, nil
	}
	return in.finish(ctx, o, tmp, nil, LinkWritten)
}

// pinExpected pins the object opts names, if it is present, so that the
// stream need only be verified: GC cannot remove the object meanwhile.
func (in *Ingest) pinExpected(ctx context.Context, opts InsertOptions) (Digest, bool) {
	var d Digest
	switch {
	case opts.Digest != nil:
		d = *opts.Digest
	case opts.SHA256 != nil:
		var ok bool
		if d, ok = in.s.LookupSHA256(*opts.SHA256); !ok {
			return d, false
		}
	default:
		return d, false
	}
	return d, in.pinPresent(ctx, d, true) == nil
}

// verifyPresent hashes the rest of the stream without writing it, for an
// object pinned tentatively by pinExpected, and settles the pin.
func (in *Ingest) verifyPresent(ctx context.Context, d Digest, h *hashers, first, spare []byte, r io.Reader, opts InsertOptions) (Object, error) {
	err := h.copyHashing(ctx, nil, first, spare, r)
	var o Object
	if err == nil {
		o, err = h.object(opts)
	}
	if err == nil && o.Digest != d {
		err = fmt.Errorf("%w: fs-verity digest is %s, the index says %s", ErrDigestMismatch, o.Digest, d)
	}
	in.settle(d, err == nil)
	if err != nil {
		return o, err
	}
	o.Existed = true
	in.s.ctr.record(o, LinkNone)
	return o, nil
}

// finish makes o live: if the object is absent it links it into place
// from tmp (or writes data to a new temporary file first), then records
// o in the session's pending set. The work that may be slow (writing and
// syncing data) happens before the store lock is taken, unless the object
// vanished in between.
func (in *Ingest) finish(ctx context.Context, o Object, tmp *tempFile, data []byte, mode LinkMode) (Object, error) {
	s := in.s
	if !s.Has(o.Digest) {
		if tmp == nil && data != nil {
			t, err := s.writeTemp(data)
			if err != nil {
				return o, err
			}
			defer t.discard()
			tmp = t
		}
		if tmp != nil {
			if err := s.sealTemp(tmp, o.Digest); err != nil {
				return o, err
			}
		}
	}
	unlock, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return o, err
	}
	// Under the lock the order of placing and pinning does not matter to
	// GC; admitting the digest to the session's refs only on success keeps
	// a failed insert out of them.
	o.Existed, err = in.place(o, tmp, data)
	if err == nil && o.Existed {
		err = in.pin(o.Digest, false)
	} else if err == nil {
		in.admit(o.Digest)
	}
	if err == nil && o.SHA256 != (SHA256{}) {
		err = s.indexSHA256(o.SHA256, o.Digest)
	}
	unlock()
	if err != nil {
		return o, err
	}
	s.ctr.record(o, mode)
	return o, nil
}

// place links the object into place unless it exists, and reports
// whether it existed. Called with the store lock held.
func (in *Ingest) place(o Object, tmp *tempFile, data []byte) (bool, error) {
	s := in.s
	if s.Has(o.Digest) {
		return true, nil
	}
	if tmp == nil {
		if data == nil {
			return false, fmt.Errorf("object %s: %w (removed while its content was being verified)", o.Digest, ErrNotFound)
		}
		t, err := s.writeTemp(data)
		if err != nil {
			return false, err
		}
		defer t.discard()
		tmp = t
	}
	// Record the intent first: if the process dies right after the link,
	// recovery must know this object may be unsynced.
	if err := in.intend(o.Digest); err != nil {
		return false, err
	}
	created, err := s.linkTemp(tmp, o.Digest)
	if err != nil {
		return false, err
	}
	return !created, nil
}

// tempFile is content being written: an unnamed O_TMPFILE file in the
// staging directory, or, where O_TMPFILE is unsupported, a named one.
type tempFile struct {
	f      *os.File
	name   string // "" for O_TMPFILE
	sealed bool   // synced and, if configured, fs-verity enabled
}

// createTemp creates an empty temporary file in staging, mode 0644.
func (s *Store) createTemp() (*tempFile, error) {
	dir := filepath.Join(s.root, dirStaging)
	if !s.noTmpfile.Load() {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, objectMode)
		if err == nil {
			if err := unix.Fchmod(fd, objectMode); err != nil {
				unix.Close(fd)
				return nil, fmt.Errorf("temporary file: %w", err)
			}
			return &tempFile{f: os.NewFile(uintptr(fd), dir+"/(O_TMPFILE)")}, nil
		}
		if err != unix.EOPNOTSUPP && err != unix.EISDIR && err != unix.EINVAL {
			return nil, fmt.Errorf("temporary file in %s: %w", dir, err)
		}
		s.noTmpfile.Store(true)
	}
	f, err := os.CreateTemp(dir, "tmp-")
	if err != nil {
		return nil, fmt.Errorf("temporary file: %w", err)
	}
	if err := f.Chmod(objectMode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("temporary file: %w", err)
	}
	return &tempFile{f: f, name: f.Name()}, nil
}

// writeTemp writes data to a new temporary file.
func (s *Store) writeTemp(data []byte) (*tempFile, error) {
	t, err := s.createTemp()
	if err != nil {
		return nil, err
	}
	if _, err := t.f.Write(data); err != nil {
		t.discard()
		return nil, fmt.Errorf("write temporary file: %w", err)
	}
	return t, nil
}

// discard closes the temporary file and removes its name, if any. An
// O_TMPFILE file that was never linked vanishes with its descriptor.
func (t *tempFile) discard() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
	if t.name != "" {
		os.Remove(t.name)
		t.name = ""
	}
}

// sealTemp syncs the temporary file (SyncEach) and enables fs-verity
// when configured, once: callers do it before taking the store lock, so
// that the lock is not held across a sync.
func (s *Store) sealTemp(t *tempFile, d Digest) error {
	if t.sealed {
		return nil
	}
	if s.opts.Sync == SyncEach {
		if err := s.syncFile(t.f); err != nil {
			return fmt.Errorf("sync object %s: %w", d, err)
		}
	}
	if s.verity {
		if err := t.enableVerity(); err != nil {
			return fmt.Errorf("object %s: %w", d, err)
		}
	}
	t.sealed = true
	return nil
}

// linkTemp seals the temporary file (see sealTemp) and links it under
// d's final name. It reports false when
// another writer linked the same object first (the content is then the
// same, by construction of the name).
func (s *Store) linkTemp(t *tempFile, d Digest) (bool, error) {
	if err := s.sealTemp(t, d); err != nil {
		return false, err
	}
	final := s.Path(d)
	err := s.linkObject(d, func(final string) error {
		if t.name != "" {
			return os.Link(t.name, final)
		}
		src := "/proc/self/fd/" + strconv.Itoa(int(t.f.Fd()))
		return unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, final, unix.AT_SYMLINK_FOLLOW)
	})
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("link object %s: %w", d, err)
	}
	if s.opts.Sync == SyncEach {
		if err := s.syncDir(filepath.Dir(final)); err != nil {
			return true, err
		}
	}
	return true, nil
}

// enableVerity reopens the file read-only, closes the writable
// descriptor (the kernel refuses fs-verity while a writer is open) and
// enables fs-verity.
func (t *tempFile) enableVerity() error {
	ro, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(t.f.Fd())))
	if err != nil {
		return fmt.Errorf("reopen for fs-verity: %w", err)
	}
	t.f.Close()
	t.f = ro
	if err := fsverity.Enable(ro.Fd()); err != nil {
		return fmt.Errorf("enable fs-verity: %w", err)
	}
	return nil
}

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read reads from the underlying reader unless the context is done.
func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
