package hostlink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// IndexOptions configure NewIndex.
type IndexOptions struct {
	// CacheDir holds the persistent digest cache (created if needed). It
	// must not be inside the host repository, which is never written.
	// Give each repository its own directory. Required.
	CacheDir string
	// Hash computes the content digest the index matches on, reading r
	// to its end: the fs-verity SHA-256 digest in production (see
	// dedup/fsverity); tests may use plain SHA-256. Required.
	Hash func(r io.Reader) ([32]byte, error)
	// HashName names Hash in the cache ("fsverity-sha256"); digests
	// cached under another name are never used. Lowercase letters,
	// digits and '-'. Required.
	HashName string
	// only, when not nil, restricts the candidates to these file objects
	// (for example Repo.fileObjects over the deployments' commits).
	only map[checksum]struct{}
	// MinSize leaves out objects smaller than this many bytes.
	MinSize int64
	// NoSHA256 skips the plain SHA-256 computed beside Hash in lookups
	// (then lookupSHA256 fails): for callers that rarely need it, it
	// halves the hashing. Contents still computes it, for the objects
	// whose cache records lack it.
	NoSHA256 bool
}

// indexStats describe an Index.
type indexStats struct {
	Objects int // candidate file objects
	Sizes   int // distinct sizes among them
	// Cached counts objects whose digest is known (from the cache or
	// hashed), and bare-user symlink objects examined once (their
	// user.ostreemeta read) and recorded as not content, never hashed.
	Cached int
	Hashed int // objects this Index hashed (each at most once)
	// Headers counts objects whose file header LookupContent read (it
	// matches content by ostree checksum, never reading objects).
	Headers int
	Dropped int // cache entries dropped for vanished or changed objects
	// DirsListed and Statted count the last cheap pass's work: objects/xx
	// directories listed (unchanged ones are not) and objects stat'ed
	// (names known from the previous pass are not).
	DirsListed, Statted int
}

// Index finds host file objects by content. Building it is a cheap pass
// (a stat per object, no file opened) giving size → candidates; lookupDigest
// hashes candidates of the asked size only, lazily, and records every
// digest in a cache on disk keyed by object name (objects are
// immutable), so no object is hashed twice, across processes too. An
// Index is safe for concurrent use.
type Index struct {
	repo *Repo
	opts IndexOptions

	// stripes serialize lookups of sizes equal modulo len(stripes), so
	// that no two goroutines hash the same candidates while lookups of
	// other sizes (and their hashing) run in parallel.
	stripes [64]sync.Mutex

	mu       sync.Mutex // guards the fields below; never held while hashing
	bySize   map[int64][]objectStat
	cache    *digestCache
	counters indexStats
	// headers holds the file header of every object LookupContent
	// checksummed content against (one string per distinct header, in
	// headerSet); unsaved the cache entries it learnt that are not yet in
	// the cache file.
	headers   map[checksum]string
	headerSet map[string]string
	unsaved   []cacheEntry
}

var hashNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// NewIndex builds the index of r's file objects: the cheap pass, then the
// cache is loaded and entries for objects that vanished (ostree prune) or
// changed are dropped from it.
func NewIndex(ctx context.Context, r *Repo, opts IndexOptions) (*Index, error) {
	if opts.Hash == nil || opts.CacheDir == "" || !hashNameRE.MatchString(opts.HashName) {
		return nil, fmt.Errorf("%w: NewIndex needs Hash, CacheDir and a HashName matching %s", errInvalidOptions, hashNameRE)
	}
	if err := checkOutside(opts.CacheDir, r.path); err != nil {
		return nil, err
	}
	cache, err := openDigestCache(opts.CacheDir, opts.HashName)
	if err != nil {
		return nil, err
	}
	ix := &Index{repo: r, opts: opts, cache: cache, headers: map[checksum]string{}, headerSet: map[string]string{}}
	if err := ix.rescan(ctx); err != nil {
		cache.close()
		return nil, err
	}
	return ix, nil
}

// checkOutside refuses a cache directory inside the repository.
func checkOutside(dir, repo string) error {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return filepath.Clean(p)
		}
		if e, err := filepath.EvalSymlinks(a); err == nil {
			return e
		}
		return a
	}
	d, r := abs(dir), abs(repo)
	if d == r || strings.HasPrefix(d, r+string(filepath.Separator)) {
		return fmt.Errorf("%w: %s is in %s", errCacheInRepo, dir, repo)
	}
	return nil
}

// Close saves the digests LookupContent learnt that are not saved yet
// and releases the cache's lock file. The Index must not be used after.
func (ix *Index) Close() error {
	err := ix.save()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if cerr := ix.cache.close(); err == nil {
		err = cerr
	}
	return err
}

// rescan redoes the cheap pass, for example after `ostree prune` or a
// host update, and drops cache entries of objects that are gone. Only the
// objects/xx directories changed since the last pass (remembered in the
// cache directory) are listed again.
func (ix *Index) rescan(ctx context.Context) error {
	prev, err := loadScanState(ix.opts.CacheDir)
	if err != nil {
		return err
	}
	scan, counts, err := scanFileObjects(ctx, filepath.Join(ix.repo.path, "objects"), prev)
	if err != nil {
		return err
	}
	objs := scan.objects()
	present := make(map[checksum]objectStat, len(objs))
	bySize := map[int64][]objectStat{}
	for _, o := range objs {
		present[o.sum] = o
		if _, ok := ix.opts.only[o.sum]; (ix.opts.only == nil || ok) && o.size >= ix.opts.MinSize {
			bySize[o.size] = append(bySize[o.size], o)
		}
	}
	for _, c := range bySize { // deterministic choice among equal contents
		sort.Slice(c, func(i, j int) bool { return bytes.Compare(c[i].sum[:], c[j].sum[:]) < 0 })
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	unlock, err := ix.cache.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if counts.dirsListed > 0 || prev == nil || len(prev.dirs) != len(scan.dirs) {
		if err := saveScanState(ix.opts.CacheDir, scan); err != nil {
			return err
		}
	}
	if err := ix.cache.refresh(); err != nil {
		return err
	}
	dropped, err := ix.cache.compact(func(e *cacheEntry) bool {
		o, ok := present[e.name]
		return ok && o.size == e.size && o.mtime == e.mtime
	})
	if err != nil {
		return err
	}
	ix.bySize = bySize
	ix.counters.Objects, ix.counters.Sizes = 0, len(bySize)
	for _, c := range bySize {
		ix.counters.Objects += len(c)
	}
	ix.counters.Dropped += dropped
	ix.counters.DirsListed, ix.counters.Statted = counts.dirsListed, counts.statted
	return nil
}

// stats returns counters describing the index.
func (ix *Index) stats() indexStats {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	s := ix.counters
	s.Cached = len(ix.cache.entries)
	s.Headers = len(ix.headers)
	return s
}

// lookupDigest returns the path of a host file object whose content has the
// given size and digest (as computed by IndexOptions.Hash), hashing
// candidates of that size that were never hashed, one at a time until
// one matches. ok is false when no host object has that content.
func (ix *Index) lookupDigest(ctx context.Context, size int64, digest [32]byte) (string, bool, error) {
	return ix.lookup(ctx, size, func(e *cacheEntry) bool { return e.digest == digest })
}

// lookupSHA256 is lookupDigest by plain SHA-256 of the content, which the index
// computes in the same read as the main digest.
func (ix *Index) lookupSHA256(ctx context.Context, size int64, sum [32]byte) (string, bool, error) {
	if ix.opts.NoSHA256 {
		return "", false, fmt.Errorf("%w: LookupSHA256 on an index built with NoSHA256", errInvalidOptions)
	}
	return ix.lookup(ctx, size, func(e *cacheEntry) bool { return e.hasSHA && e.sha256 == sum })
}

func (ix *Index) lookup(ctx context.Context, size int64, match func(*cacheEntry) bool) (string, bool, error) {
	defer ix.lockSize(size)()
	p, ok, unknown := ix.matchKnown(size, match)
	if ok || len(unknown) == 0 {
		return p, ok, nil
	}
	return ix.hashUnknown(ctx, unknown, match, !ix.opts.NoSHA256)
}

// lockSize takes the stripe of lookups of size; call the result to
// release it.
func (ix *Index) lockSize(size int64) func() {
	stripe := &ix.stripes[uint64(size)%uint64(len(ix.stripes))]
	stripe.Lock()
	return stripe.Unlock
}

// matchKnown looks for a match among the candidates of size whose digest
// is known in memory, and returns the candidates whose digest is not.
func (ix *Index) matchKnown(size int64, match func(*cacheEntry) bool) (string, bool, []objectStat) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var unknown []objectStat
	for _, o := range append([]objectStat(nil), ix.bySize[size]...) {
		e, ok := ix.cache.entries[o.sum]
		if !ok || !e.current(o) {
			unknown = append(unknown, o)
			continue
		}
		if e.content && match(&e) {
			if p, ok := ix.stillThere(o); ok {
				return p, true, nil
			}
		}
	}
	return "", false, unknown
}

// hashUnknown hashes the given candidates under the cache lock (after
// loading what other processes hashed meanwhile) until one matches.
// Call with the size's stripe held and ix.mu not held: the hashing runs
// outside ix.mu, so lookups of other sizes proceed meanwhile.
func (ix *Index) hashUnknown(ctx context.Context, unknown []objectStat, match func(*cacheEntry) bool, withSHA bool) (string, bool, error) {
	unlock, err := ix.cache.lock()
	if err != nil {
		return "", false, err
	}
	defer unlock()
	ix.mu.Lock()
	err = ix.cache.refresh()
	ix.mu.Unlock()
	if err != nil {
		return "", false, err
	}
	for _, o := range unknown {
		ix.mu.Lock()
		e, ok := ix.cache.entries[o.sum]
		ix.mu.Unlock()
		if !ok || !e.current(o) || (withSHA && e.content && !e.hasSHA) {
			if err := ctx.Err(); err != nil {
				return "", false, err
			}
			var gone bool
			if e, gone, err = ix.hashObject(o, withSHA); err != nil {
				return "", false, err
			}
			if err := ix.record(o, e, gone); err != nil {
				return "", false, err
			}
			if gone {
				continue
			}
		}
		if e.content && match(&e) {
			ix.mu.Lock()
			p, ok := ix.stillThere(o)
			ix.mu.Unlock()
			if ok {
				return p, true, nil
			}
		}
	}
	return "", false, nil
}

// record stores a freshly hashed entry (or forgets a vanished object).
func (ix *Index) record(o objectStat, e cacheEntry, gone bool) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if gone {
		ix.forget(o)
		return nil
	}
	if err := ix.cache.add(e); err != nil {
		return err
	}
	if e.content {
		ix.counters.Hashed++
	}
	return nil
}

// hashObject reads one object once, computing the index digest and
// SHA-256 together. gone reports an object pruned since the cheap pass.
func (ix *Index) hashObject(o objectStat, withSHA bool) (e cacheEntry, gone bool, err error) {
	e = cacheEntry{name: o.sum, size: o.size, mtime: o.mtime}
	f, err := ix.repo.openFile(o.sum)
	if errors.Is(err, fs.ErrNotExist) {
		return e, true, nil
	}
	if err != nil {
		return e, false, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return e, false, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	e.size, e.mtime = st.Size, st.Mtim.Nano()
	if ix.repo.mode == modeBareUser {
		fi, err := ix.repo.bareUserInfo(f.Name(), &st)
		if err != nil {
			return e, false, err
		}
		if !fi.IsRegular() {
			return e, false, nil // a symlink stored as a file: not content
		}
	}
	var sha hash.Hash
	cr := &countingReader{r: f}
	if withSHA {
		sha = sha256.New()
		cr.r = io.TeeReader(f, sha)
	}
	if e.digest, err = ix.opts.Hash(cr); err != nil {
		return e, false, fmt.Errorf("hashing %s: %w", f.Name(), err)
	}
	if cr.n != e.size {
		return e, false, fmt.Errorf("hashing %s: hash read %d of %d bytes", f.Name(), cr.n, e.size)
	}
	if sha != nil {
		sha.Sum(e.sha256[:0])
		e.hasSHA = true
	}
	e.content = true
	return e, false, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// stillThere checks a matched object still exists unchanged and returns
// its path; a vanished or changed object is forgotten. Call with ix.mu
// held.
func (ix *Index) stillThere(o objectStat) (string, bool) {
	p := ix.repo.fileObjectPath(o.sum)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG ||
		st.Size != o.size || st.Mtim.Nano() != o.mtime {
		ix.forget(o)
		return "", false
	}
	return p, true
}

// forget removes a vanished object from the candidates.
func (ix *Index) forget(o objectStat) {
	c := ix.bySize[o.size]
	for i := range c {
		if c[i].sum == o.sum {
			ix.bySize[o.size] = append(c[:i:i], c[i+1:]...)
			ix.counters.Objects--
			return
		}
	}
}

// Contents calls fn with the path, size and plain SHA-256 of every
// candidate object holding a regular file's content. Objects never
// hashed, or hashed without their SHA-256 (lookups of an index with
// NoSHA256), are hashed first, each once across processes: the digests
// go to the cache file as lookups' do.
func (ix *Index) Contents(ctx context.Context, fn func(path string, size int64, sha [32]byte) error) error {
	ix.mu.Lock()
	sizes := make([]int64, 0, len(ix.bySize))
	for size := range ix.bySize {
		sizes = append(sizes, size)
	}
	ix.mu.Unlock()
	// Sizes are hashed on one worker per CPU: nothing else waits on a
	// first refresh, and hashing is most of it.
	work := make(chan int64)
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for size := range work {
				if errs[w] == nil {
					errs[w] = ix.hashForSHA(ctx, size)
				}
			}
		})
	}
	for _, size := range sizes {
		work <- size
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	type content struct {
		path string
		size int64
		sha  [32]byte
	}
	var all []content
	ix.mu.Lock()
	for _, objs := range ix.bySize {
		for _, o := range objs {
			if e, ok := ix.cache.entries[o.sum]; ok && e.current(o) && e.content && e.hasSHA {
				all = append(all, content{ix.repo.fileObjectPath(o.sum), o.size, e.sha256})
			}
		}
	}
	ix.mu.Unlock()
	for _, c := range all {
		if err := fn(c.path, c.size, c.sha); err != nil {
			return err
		}
	}
	return nil
}

// hashForSHA hashes, with their SHA-256, the candidates of size whose
// cache records lack it.
func (ix *Index) hashForSHA(ctx context.Context, size int64) error {
	defer ix.lockSize(size)()
	var todo []objectStat
	ix.mu.Lock()
	for _, o := range ix.bySize[size] {
		if e, ok := ix.cache.entries[o.sum]; !ok || !e.current(o) || (e.content && !e.hasSHA) {
			todo = append(todo, o)
		}
	}
	ix.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	_, _, err := ix.hashUnknown(ctx, todo, func(*cacheEntry) bool { return false }, true)
	return err
}

// current says whether e was recorded for the object o as it is now
// (objects are immutable: a changed size or mtime is another file).
func (e *cacheEntry) current(o objectStat) bool {
	return e.size == o.size && e.mtime == o.mtime
}
