package dedup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ModeCount counts objects and their bytes.
type ModeCount struct {
	Objects int64
	Bytes   int64
}

// Stats describes the store. The first group is measured by walking the
// objects; the counters are cumulative since the store was created,
// summed over every process that used it (a process killed before it
// flushed loses its unflushed share).
type Stats struct {
	// Objects and Bytes count the objects present and their content size.
	Objects int64
	Bytes   int64
	// DiskBytes is the allocated size of the objects (st_blocks).
	DiskBytes int64
	// Shared counts objects with more than one link: hard links still
	// shared with files outside the store (the host repository).
	Shared ModeCount
	// Layers is the number of layers with refs.
	Layers int

	// ByMode counts new objects by how they were stored (LinkWritten,
	// LinkHardlink, LinkReflink, LinkCopy).
	ByMode map[LinkMode]ModeCount
	// DedupHits counts inserts that found the object present; BytesSaved
	// sums their sizes.
	DedupHits  int64
	BytesSaved int64
	// Alternates counts the InsertOptions.Alternate lookups that linked
	// nothing in (those that did are in ByMode).
	Alternates AlternateStats
}

// AlternateStats counts InsertOptions.Alternate lookups that linked
// nothing in; the streamed bytes were written instead.
type AlternateStats struct {
	// Declined counts lookups that found no file, or one that could not
	// be linked in (a content or size mismatch, a link mode the file
	// system refuses).
	Declined ModeCount
	// Failed counts lookups that returned an error.
	Failed ModeCount
	// LastError is the latest error of a failed lookup or of linking in
	// a declined file, in any process; empty if there was none.
	LastError string
}

// counterModes are the modes counted in ByMode, in file order.
var counterModes = [...]LinkMode{LinkWritten, LinkHardlink, LinkReflink, LinkCopy}

// Keys of the counters file besides the modes' names.
const (
	keyHits         = "hits"
	keyDeclined     = "alternate-declined"
	keyFailed       = "alternate-failed"
	keyLastError    = "alternate-error" // followed by a Go-quoted string
	maxLastErrorLen = 1024
)

// counters are this process's unflushed statistics deltas.
type counters struct {
	mu sync.Mutex
	d  deltas
}

type deltas struct {
	byMode           [len(counterModes)]ModeCount
	hits             ModeCount
	declined, failed ModeCount
	lastError        string
}

// record counts one insert.
func (c *counters) record(o Object, mode LinkMode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o.Existed || mode == LinkNone {
		c.d.hits = add(c.d.hits, ModeCount{1, o.Size})
		return
	}
	for i, m := range counterModes {
		if m == mode {
			c.d.byMode[i] = add(c.d.byMode[i], ModeCount{1, o.Size})
		}
	}
}

// alternateMissed counts an Alternate lookup for o that linked nothing
// in: failed when the lookup returned err, else declined (with err why,
// if any). Nothing is counted when ctx is done: the insert is being
// abandoned, not declined.
func (c *counters) alternateMissed(ctx context.Context, o Object, err error, failed bool) {
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if failed {
		c.d.failed = add(c.d.failed, ModeCount{1, o.Size})
	} else {
		c.d.declined = add(c.d.declined, ModeCount{1, o.Size})
	}
	if err != nil {
		c.d.lastError = err.Error()
	}
}

// take returns the deltas and zeroes them.
func (c *counters) take() deltas {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.d
	c.d = deltas{}
	return d
}

// counterKeys names the counter file's lines: "<key> <objects> <bytes>".
func counterKeys() []string {
	keys := []string{keyHits}
	for _, m := range counterModes {
		keys = append(keys, m.String())
	}
	return append(keys, keyDeclined, keyFailed)
}

// flushCounters adds this process's deltas to the counters file, under
// an flock on that file. A torn file (crash mid-write) reads as zeros.
func (s *Store) flushCounters() error {
	d := s.ctr.take()
	f, err := os.OpenFile(filepath.Join(s.root, fileCounters), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	cur, lastError := readCounters(f)
	cur[keyHits] = add(cur[keyHits], d.hits)
	for i, m := range counterModes {
		cur[m.String()] = add(cur[m.String()], d.byMode[i])
	}
	cur[keyDeclined] = add(cur[keyDeclined], d.declined)
	cur[keyFailed] = add(cur[keyFailed], d.failed)
	if d.lastError != "" {
		lastError = d.lastError
	}
	var b bytes.Buffer
	for _, k := range counterKeys() {
		fmt.Fprintf(&b, "%s %d %d\n", k, cur[k].Objects, cur[k].Bytes)
	}
	if lastError != "" {
		if len(lastError) > maxLastErrorLen {
			lastError = strings.ToValidUTF8(lastError[:maxLastErrorLen], "") + "…"
		}
		fmt.Fprintf(&b, "%s %s\n", keyLastError, strconv.Quote(lastError))
	}
	if _, err := f.WriteAt(b.Bytes(), 0); err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	if err := f.Truncate(int64(b.Len())); err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	return nil
}

func add(a, b ModeCount) ModeCount { return ModeCount{a.Objects + b.Objects, a.Bytes + b.Bytes} }

// readCounters reads the counters file: the counts by key, and the last
// alternate error. Lines it does not understand are skipped.
func readCounters(f *os.File) (map[string]ModeCount, string) {
	m := map[string]ModeCount{}
	lastError := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if q, ok := strings.CutPrefix(sc.Text(), keyLastError+" "); ok {
			if e, err := strconv.Unquote(q); err == nil {
				lastError = e
			}
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue
		}
		n, err1 := strconv.ParseInt(fs[1], 10, 64)
		b, err2 := strconv.ParseInt(fs[2], 10, 64)
		if err1 == nil && err2 == nil {
			m[fs[0]] = ModeCount{n, b}
		}
	}
	return m, lastError
}

// Stats walks the objects and reads the counters (after flushing this
// process's).
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := s.flushCounters(); err != nil {
		return Stats{}, fmt.Errorf("dedup: stats: %w", err)
	}
	st := Stats{ByMode: map[LinkMode]ModeCount{}}
	err := s.walkObjects(ctx, func(d Digest, path string) error {
		var fi unix.Stat_t
		if err := unix.Lstat(path, &fi); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // collected meanwhile
			}
			return err
		}
		st.Objects++
		st.Bytes += fi.Size
		st.DiskBytes += fi.Blocks * 512
		if fi.Nlink > 1 {
			st.Shared = add(st.Shared, ModeCount{1, fi.Size})
		}
		return nil
	}, nil)
	if err != nil {
		return st, fmt.Errorf("dedup: stats: %w", err)
	}
	layers, err := s.Layers()
	if err != nil {
		return st, fmt.Errorf("dedup: stats: %w", err)
	}
	st.Layers = len(layers)
	f, err := os.Open(filepath.Join(s.root, fileCounters))
	if err != nil {
		return st, fmt.Errorf("dedup: stats: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		return st, fmt.Errorf("dedup: stats: %w", err)
	}
	cur, lastError := readCounters(f)
	st.DedupHits, st.BytesSaved = cur[keyHits].Objects, cur[keyHits].Bytes
	for _, m := range counterModes {
		st.ByMode[m] = cur[m.String()]
	}
	st.Alternates = AlternateStats{Declined: cur[keyDeclined], Failed: cur[keyFailed], LastError: lastError}
	return st, nil
}
