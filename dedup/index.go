package dedup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// The SHA-256 index maps a content's plain SHA-256 to its fs-verity
// digest. It is an append-only log, index/sha256.log, of fixed records:
//
//	0  32  plain SHA-256 of the content
//	32 32  fs-verity digest of the same content
//	64 8   first 8 bytes of SHA-256 over bytes 0..63 (detects torn or
//	       damaged records, which are skipped)
//
// Both digests are functions of the content, so a record is never wrong,
// only possibly stale (its object collected) or duplicated: lookups check
// that the object is present, and GC rewrites the log without stale and
// duplicate records. Records are appended under the shared store lock and
// the log is replaced under the exclusive one. The index is a cache: it
// is never synced, and a lost record only costs a missed lookup.
const (
	fileIndexLog = "sha256.log"
	indexRecord  = 72
)

func indexRecordBytes(sha SHA256, d Digest) [indexRecord]byte {
	var r [indexRecord]byte
	copy(r[:32], sha[:])
	copy(r[32:64], d[:])
	sum := sha256.Sum256(r[:64])
	copy(r[64:], sum[:8])
	return r
}

// parseIndex calls fn for every valid record in b, resynchronising byte by
// byte past damage.
func parseIndex(b []byte, fn func(sha SHA256, d Digest)) {
	for len(b) >= indexRecord {
		sum := sha256.Sum256(b[:64])
		if !bytes.Equal(sum[:8], b[64:indexRecord]) {
			b = b[1:]
			continue
		}
		fn(SHA256(b[:32]), Digest(b[32:64]))
		b = b[indexRecord:]
	}
}

// shaIndex is a Store's view of the log: an append descriptor, and a map
// loaded on the first lookup and extended from the log's tail on a miss.
type shaIndex struct {
	mu     sync.Mutex
	w      *os.File // append descriptor; reopened when the log was replaced
	m      map[SHA256]Digest
	ino    uint64 // inode of the log m was read from
	offset int64  // bytes of it read
}

func (s *Store) indexLogPath() string { return filepath.Join(s.root, dirIndex, fileIndexLog) }

// indexSHA256 appends sha -> d. The caller holds the store lock (shared),
// so GC is not replacing the log meanwhile.
func (s *Store) indexSHA256(sha SHA256, d Digest) error {
	x := &s.index
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.w != nil {
		var st unix.Stat_t
		if err := unix.Fstat(int(x.w.Fd()), &st); err != nil || st.Nlink == 0 {
			x.w.Close() // replaced by GC: append to the new log
			x.w = nil
		}
	}
	if x.w == nil {
		f, err := os.OpenFile(s.indexLogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		x.w = f
	}
	rec := indexRecordBytes(sha, d)
	if _, err := x.w.Write(rec[:]); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if x.m != nil {
		x.m[sha] = d
	}
	return nil
}

// LookupSHA256 returns the digest of the present object whose content has
// the plain SHA-256 sha, if the store has one.
func (s *Store) LookupSHA256(sha SHA256) (Digest, bool) {
	x := &s.index
	x.mu.Lock()
	defer x.mu.Unlock()
	d, ok := x.m[sha]
	if !ok {
		if err := s.refreshIndex(); err != nil {
			return Digest{}, false
		}
		d, ok = x.m[sha]
	}
	if !ok || !s.Has(d) {
		return Digest{}, false
	}
	return d, true
}

// refreshIndex reads the records appended since the last read, or the
// whole log if it was replaced. The caller holds s.index.mu.
func (s *Store) refreshIndex() error {
	x := &s.index
	f, err := os.Open(s.indexLogPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if x.m == nil || st.Ino != x.ino || st.Size < x.offset {
		x.m, x.ino, x.offset = map[SHA256]Digest{}, st.Ino, 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, x.offset, st.Size-x.offset))
	if err != nil {
		return err
	}
	// Consume only whole records; a record being appended right now is
	// read next time.
	b = b[:len(b)/indexRecord*indexRecord]
	parseIndex(b, func(sha SHA256, d Digest) { x.m[sha] = d })
	x.offset += int64(len(b))
	return nil
}

// compactIndex rewrites the log keeping one record per SHA-256 whose
// object is present. present says, for the objects GC listed, whether
// they are still there; others are looked up. The caller holds the store
// lock exclusively.
func (s *Store) compactIndex(rep *GCReport, present map[Digest]bool) error {
	p := s.indexLogPath()
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	var out bytes.Buffer
	seen := map[SHA256]bool{}
	total := 0
	parseIndex(b, func(sha SHA256, d Digest) {
		total++
		if seen[sha] {
			return
		}
		if p, ok := present[d]; (ok && !p) || (!ok && !s.Has(d)) {
			return
		}
		seen[sha] = true
		rec := indexRecordBytes(sha, d)
		out.Write(rec[:])
	})
	rep.IndexRemoved = total - len(seen)
	if rep.IndexRemoved == 0 && len(b) == out.Len() {
		return nil
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// closeIndex closes the append descriptor.
func (s *Store) closeIndex() {
	s.index.mu.Lock()
	if s.index.w != nil {
		s.index.w.Close()
		s.index.w = nil
	}
	s.index.mu.Unlock()
}

// ForEachSHA256 calls fn with the plain SHA-256 and the digest of every
// object in the store. Objects the index has no record of (stored by an
// Insert with NoSHA256) are read and hashed first, and their records
// appended, so that each object is read at most once over the store's
// life. An object collected meanwhile is skipped.
func (s *Store) ForEachSHA256(ctx context.Context, fn func(sha SHA256, d Digest) error) error {
	unlock, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	x := &s.index
	x.mu.Lock()
	err = s.refreshIndex()
	known := make(map[Digest]SHA256, len(x.m))
	for sha, d := range x.m {
		known[d] = sha
	}
	x.mu.Unlock()
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return s.walkObjects(ctx, func(d Digest, path string) error {
		sha, ok := known[d]
		if !ok {
			sum, err := hashFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("index: %w", err)
			}
			sha = sum
			if err := s.indexSHA256(sha, d); err != nil {
				return err
			}
		}
		return fn(sha, d)
	}, nil)
}

// hashFile returns the plain SHA-256 of the file at path.
func hashFile(path string) (SHA256, error) {
	f, err := os.Open(path)
	if err != nil {
		return SHA256{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return SHA256{}, fmt.Errorf("read %s: %w", path, err)
	}
	return SHA256(h.Sum(nil)), nil
}
