package hostlink

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
)

// The digest cache file holds fixed-size records, appended as objects are
// hashed and rewritten (compacted) when objects disappear. Its name
// carries the hash name, so digests of another hash function are never
// mistaken for these. A record is valid when its magic and CRC check;
// a torn tail from a crash is ignored and cut off before the next append.
// The first record is a header ("HLDH", a random generation in the name
// field, CRC) identifying this version of the file.
//
//	[0:4]     magic "HLD1"
//	[4:36]    object name (ostree checksum)
//	[36:44]   object size, little-endian
//	[44:52]   object mtime in ns, little-endian
//	[52]      flags: recContent when the object is a regular file's
//	          content, recSHA256 when [88:120] holds its SHA-256
//	[53:56]   zero
//	[56:88]   content digest (the index's hash function)
//	[88:120]  content SHA-256
//	[120:124] CRC-32 (IEEE) of [0:120], little-endian
const (
	recSize    = 124
	recMagic   = "HLD1"
	hdrMagic   = "HLDH"
	recContent = 1 << 0
	recSHA256  = 1 << 1
)

// rawRecord is one record as stored; accessors name its fields.
type rawRecord [recSize]byte

func (r *rawRecord) magic() []byte  { return r[0:4] }
func (r *rawRecord) name() []byte   { return r[4:36] }
func (r *rawRecord) size() []byte   { return r[36:44] }
func (r *rawRecord) mtime() []byte  { return r[44:52] }
func (r *rawRecord) flags() *byte   { return &r[52] }
func (r *rawRecord) digest() []byte { return r[56:88] }
func (r *rawRecord) sha() []byte    { return r[88:120] }
func (r *rawRecord) crc() []byte    { return r[120:124] }

// cacheEntry is a decoded record.
type cacheEntry struct {
	name    checksum
	size    int64
	mtime   int64
	content bool // false: not regular content (a bare-user symlink)
	digest  [32]byte
	sha256  [32]byte
	hasSHA  bool // sha256 was computed (records of NoSHA256 indexes lack it)
}

func (e *cacheEntry) encode() *rawRecord {
	var r rawRecord
	copy(r.magic(), recMagic)
	copy(r.name(), e.name[:])
	binary.LittleEndian.PutUint64(r.size(), uint64(e.size))
	binary.LittleEndian.PutUint64(r.mtime(), uint64(e.mtime))
	if e.content {
		*r.flags() = recContent
	}
	if e.hasSHA {
		*r.flags() |= recSHA256
	}
	copy(r.digest(), e.digest[:])
	copy(r.sha(), e.sha256[:])
	binary.LittleEndian.PutUint32(r.crc(), crc32.ChecksumIEEE(r[:120]))
	return &r
}

func decodeRecord(r *rawRecord) (cacheEntry, bool) {
	var e cacheEntry
	if !bytes.Equal(r.magic(), []byte(recMagic)) ||
		binary.LittleEndian.Uint32(r.crc()) != crc32.ChecksumIEEE(r[:120]) {
		return e, false
	}
	copy(e.name[:], r.name())
	e.size = int64(binary.LittleEndian.Uint64(r.size()))
	e.mtime = int64(binary.LittleEndian.Uint64(r.mtime()))
	e.content = *r.flags()&recContent != 0
	e.hasSHA = *r.flags()&recSHA256 != 0
	copy(e.digest[:], r.digest())
	copy(e.sha256[:], r.sha())
	return e, true
}

// newHeader returns a header record with a fresh random generation: the
// first record of every cache file. A process that loaded part of a file
// knows by the generation whether the file was replaced (compacted)
// since, which inode numbers cannot tell (they are reused).
func newHeader() (*rawRecord, [32]byte, error) {
	var gen [32]byte
	if _, err := rand.Read(gen[:]); err != nil {
		return nil, gen, fmt.Errorf("digest cache generation: %w", err)
	}
	var r rawRecord
	copy(r.magic(), hdrMagic)
	copy(r.name(), gen[:])
	binary.LittleEndian.PutUint32(r.crc(), crc32.ChecksumIEEE(r[:120]))
	return &r, gen, nil
}

// headerGen checks a header record and returns its generation.
func headerGen(r *rawRecord) ([32]byte, bool) {
	var gen [32]byte
	if !bytes.Equal(r.magic(), []byte(hdrMagic)) ||
		binary.LittleEndian.Uint32(r.crc()) != crc32.ChecksumIEEE(r[:120]) {
		return gen, false
	}
	copy(gen[:], r.name())
	return gen, true
}

// digestCache is the on-disk digest cache shared by every process that
// indexes the same repository with the same hash. Reads and writes of
// the file happen under an exclusive flock on a separate lock file, so
// that an object is hashed by one process only.
type digestCache struct {
	path     string
	lockFile *os.File
	// holdMu and holders count this process's holders of the flock, so
	// that goroutines may hold it together and the last one releases it.
	holdMu  sync.Mutex
	holders int

	entries map[checksum]cacheEntry
	gen     [32]byte // generation of the loaded file
	off     int64    // bytes of it loaded (0: nothing valid loaded)
	torn    bool     // it ends in a partial record
}

// openDigestCache opens (creating dir and the lock file) the cache for
// hashName under dir.
func openDigestCache(dir, hashName string) (*digestCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating cache directory: %w", err)
	}
	base := filepath.Join(dir, "digests-"+hashName)
	lf, err := os.OpenFile(base+".lock", os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening cache lock: %w", err)
	}
	return &digestCache{path: base + ".v1", lockFile: lf, entries: map[checksum]cacheEntry{}}, nil
}

// close releases the lock file.
func (c *digestCache) close() error { return c.lockFile.Close() }

// lock takes the cross-process lock; call the returned function to
// release it. Goroutines of one process share it: the first takes the
// flock, the last to release drops it, so another process never works
// while any goroutine here does.
func (c *digestCache) lock() (func(), error) {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	fd := int(c.lockFile.Fd())
	for c.holders == 0 {
		err := unix.Flock(fd, unix.LOCK_EX)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINTR) {
			return nil, fmt.Errorf("locking digest cache: %w", err)
		}
	}
	c.holders++
	return func() {
		c.holdMu.Lock()
		defer c.holdMu.Unlock()
		if c.holders--; c.holders == 0 {
			_ = unix.Flock(fd, unix.LOCK_UN)
		}
	}, nil
}

// reset forgets everything loaded.
func (c *digestCache) reset() {
	c.entries, c.gen, c.off, c.torn = map[checksum]cacheEntry{}, [32]byte{}, 0, false
}

// refresh loads records written since the last load (by this or another
// process); after a compaction by another process it reloads the file.
// A file without a valid header is ignored (and replaced by the next
// add). Call with the lock held.
func (c *digestCache) refresh() error {
	f, err := os.Open(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		c.reset()
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening digest cache: %w", err)
	}
	defer f.Close()
	var hdr rawRecord
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		c.reset()
		return nil
	}
	gen, ok := headerGen(&hdr)
	if !ok {
		c.reset()
		return nil
	}
	if gen != c.gen || c.off == 0 {
		c.reset()
		c.gen, c.off = gen, recSize
	}
	if _, err := f.Seek(c.off, io.SeekStart); err != nil {
		return fmt.Errorf("seeking digest cache: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("reading digest cache: %w", err)
	}
	n := len(data) / recSize * recSize
	for i := 0; i < n; i += recSize {
		if e, ok := decodeRecord((*rawRecord)(data[i : i+recSize])); ok {
			c.entries[e.name] = e
		}
	}
	c.off += int64(n)
	c.torn = n != len(data)
	return nil
}

// add appends entries to the file and to memory, starting a new file
// (with a header) if none valid exists. Call with the lock held, after
// refresh.
func (c *digestCache) add(es ...cacheEntry) error {
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("opening digest cache: %w", err)
	}
	defer f.Close()
	var buf []byte
	if c.off == 0 {
		hdr, gen, err := newHeader()
		if err != nil {
			return err
		}
		buf, c.gen, c.torn = append(buf, hdr[:]...), gen, true
	}
	if c.torn {
		if err := f.Truncate(c.off); err != nil {
			return fmt.Errorf("cutting torn digest cache record: %w", err)
		}
		c.torn = false
	}
	for i := range es {
		buf = append(buf, es[i].encode()[:]...)
	}
	if _, err := f.WriteAt(buf, c.off); err != nil {
		return fmt.Errorf("writing digest cache: %w", err)
	}
	c.off += int64(len(buf))
	for _, e := range es {
		c.entries[e.name] = e
	}
	return nil
}

// compact rewrites the file with only the entries keep accepts, through
// a temporary file renamed into place. Call with the lock held, after
// refresh. It returns how many entries were dropped.
func (c *digestCache) compact(keep func(*cacheEntry) bool) (int, error) {
	hdr, gen, err := newHeader()
	if err != nil {
		return 0, err
	}
	buf := append([]byte(nil), hdr[:]...)
	kept := map[checksum]cacheEntry{}
	for name, e := range c.entries {
		if keep(&e) {
			kept[name] = e
			buf = append(buf, e.encode()[:]...)
		}
	}
	dropped := len(c.entries) - len(kept)
	if dropped == 0 && !c.torn {
		return 0, nil
	}
	// A cache: not synced.
	o := atomicfile.Options{Pattern: ".digests-*", Flush: atomicfile.FlushNone}
	if err := atomicfile.WriteFile(c.path, buf, o); err != nil {
		return 0, fmt.Errorf("compacting digest cache: %w", err)
	}
	c.entries, c.gen, c.off, c.torn = kept, gen, int64(len(buf)), false
	return dropped, nil
}
