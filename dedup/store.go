package dedup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
)

// FormatVersion is the on-disk layout version this code writes and reads
// (see FORMAT.md). Open refuses a store with a higher version.
const FormatVersion = 1

// formatMagic starts the FORMAT file; the version number follows it.
const formatMagic = "cfs-dedup-store "

// Directory and file names under the store root (FORMAT.md).
const (
	dirObjects    = "objects"
	dirRefs       = "refs"
	dirPending    = "pending"
	dirIndex      = "index"
	dirStaging    = "staging"
	dirQuarantine = "quarantine"
	fileFormat    = "FORMAT"
	fileLock      = "lock"
	fileCounters  = "counters"
)

// objectMode is the permission of every object the store writes itself
// (hard-linked objects keep their source's metadata, which is never
// changed).
const objectMode = 0o644

// DefaultSmallThreshold is the default Options.SmallThreshold.
const DefaultSmallThreshold = 256 << 10

// SyncMode chooses when the store calls fsync. See FORMAT.md.
type SyncMode int

const (
	// SyncBatch (the default) does not sync objects one by one. The
	// store's file system is synced once (syncfs) before a layer's refs
	// are written (Commit, SetRefs), and before a session that created
	// objects ends without committing (Abort, Close). New objects are
	// marked unsynced in their session's pending file; when a session's
	// process has died, the next Open or GC rehashes those objects and
	// deletes any that a machine crash left torn. After a crash, every
	// object of every registered layer is present and whole.
	SyncBatch SyncMode = iota
	// SyncEach syncs each new object's data before it is linked under
	// its final name, and its directory after: an insert is durable when
	// it returns, at the price of one or two flushes per new object.
	SyncEach
	// SyncNever never syncs: for scratch stores and tests. A crash of
	// the machine (not of the process) may leave torn objects.
	SyncNever
)

// VerityMode chooses whether new objects get fs-verity enabled.
type VerityMode int

const (
	// VerityNone (the default) never enables fs-verity.
	VerityNone VerityMode = iota
	// VerityAuto enables fs-verity on new objects where the kernel and
	// file system support it, and does nothing where they do not.
	VerityAuto
	// VerityRequire enables fs-verity on every new object; Open fails
	// with ErrVerityUnsupported where it is not supported.
	VerityRequire
)

// Options configure a Store. The zero value is valid.
type Options struct {
	// Sync is the fsync policy; the zero value is SyncBatch.
	Sync SyncMode
	// Verity chooses fs-verity on new objects; the zero value is
	// VerityNone.
	Verity VerityMode
	// SmallThreshold is the largest content, in bytes, that Insert hashes
	// in memory before writing anything (so that content already present
	// costs no write at all). Zero means DefaultSmallThreshold.
	SmallThreshold int
}

// Store is a content-addressed object store rooted at a directory. It is
// safe for use by many goroutines, and by many processes on the same
// root (they coordinate with file locks).
type Store struct {
	root   string
	opts   Options
	verity bool // fs-verity is enabled on new objects
	bufs   sync.Pool
	ctr    counters
	index  shaIndex

	noTmpfile atomic.Bool // O_TMPFILE failed in staging: use named files

	mu     sync.Mutex
	def    *Ingest // pins objects inserted through Store.Insert until Close
	closed bool
}

// Open opens the store at root, creating it (and root) if it does not
// exist. It reaps the sessions of dead processes, deleting objects they
// created that a machine crash left torn (see SyncBatch).
func Open(root string, opts Options) (*Store, error) {
	if opts.SmallThreshold <= 0 {
		opts.SmallThreshold = DefaultSmallThreshold
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("dedup: open %s: %w", root, err)
	}
	s := &Store{root: abs, opts: opts}
	s.bufs.New = func() any { b := make([]byte, opts.SmallThreshold); return &b }
	if err := s.initLayout(); err != nil {
		return nil, fmt.Errorf("dedup: open %s: %w", root, err)
	}
	if err := s.probeVerity(); err != nil {
		return nil, fmt.Errorf("dedup: open %s: %w", root, err)
	}
	if _, _, err := s.recoverDead(context.Background()); err != nil {
		return nil, fmt.Errorf("dedup: open %s: recover dead sessions: %w", root, err)
	}
	return s, nil
}

// initLayout creates the directories and the FORMAT file if missing and
// checks the format version.
func (s *Store) initLayout() error {
	dirs := []string{dirObjects, dirRefs, dirPending, dirIndex, dirStaging, dirQuarantine}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(s.root, d), 0o755); err != nil {
			return err
		}
	}
	if err := s.checkFormat(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(s.root, fileLock), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// checkFormat reads FORMAT, or writes it atomically (temporary file, then
// link, so concurrent creators agree) when the store is new.
func (s *Store) checkFormat() error {
	p := filepath.Join(s.root, fileFormat)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.writeFormat(p); err != nil {
			return err
		}
		data, err = os.ReadFile(p)
	}
	if err != nil {
		return err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	v, err := strconv.Atoi(strings.TrimPrefix(line, formatMagic))
	if !strings.HasPrefix(line, formatMagic) || err != nil {
		return fmt.Errorf("%w: FORMAT holds %q", ErrUnsupportedFormat, line)
	}
	if v > FormatVersion || v < 1 {
		return fmt.Errorf("%w: version %d, this code reads up to %d", ErrUnsupportedFormat, v, FormatVersion)
	}
	return nil
}

func (s *Store) writeFormat(p string) error {
	content := fmt.Sprintf("%s%d\n", formatMagic, FormatVersion)
	tmp, err := os.CreateTemp(s.root, ".format-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := s.syncFile(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), p); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return s.syncDir(s.root)
}

// Root returns the store's root directory (absolute).
func (s *Store) Root() string { return s.root }

// ObjectsDir returns the objects directory, to be used as an overlayfs
// data-only lower layer.
func (s *Store) ObjectsDir() string { return filepath.Join(s.root, dirObjects) }

// Path returns the path of the object named d, whether or not it exists.
func (s *Store) Path(d Digest) string {
	return filepath.Join(s.root, dirObjects, ObjectPath(d))
}

// Has reports whether the object named d exists.
func (s *Store) Has(d Digest) bool {
	var st unix.Stat_t
	return unix.Stat(s.Path(d), &st) == nil
}

// Open opens the object named d for reading. A missing object gives an
// error wrapping ErrNotFound.
func (s *Store) Open(d Digest) (*os.File, error) {
	f, err := os.Open(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("dedup: open object %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("dedup: open object %s: %w", d, err)
	}
	return f, nil
}

// Stat returns the file information of the object named d. A missing
// object gives an error wrapping ErrNotFound.
func (s *Store) Stat(d Digest) (fs.FileInfo, error) {
	fi, err := os.Stat(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("dedup: stat object %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("dedup: stat object %s: %w", d, err)
	}
	return fi, nil
}

// VerityEnabled reports whether new objects get fs-verity (VerityRequire,
// or VerityAuto where supported).
func (s *Store) VerityEnabled() bool { return s.verity }

// Close releases the objects pinned by Store.Insert and Store.InsertFile
// (they become collectable unless a layer references them) and flushes
// the statistics counters. Using the Store after Close gives ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	def := s.def
	s.def = nil
	s.mu.Unlock()
	var errs []error
	if def != nil {
		errs = append(errs, def.Abort())
	}
	errs = append(errs, s.flushCounters())
	s.closeIndex()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dedup: close: %w", err)
	}
	return nil
}

// defaultIngest returns the session that pins objects inserted through
// the Store's own Insert methods, starting it on first use.
func (s *Store) defaultIngest(ctx context.Context) (*Ingest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.def == nil {
		in, err := s.BeginIngest(ctx)
		if err != nil {
			return nil, err
		}
		s.def = in
	}
	return s.def, nil
}

// linkObject makes a link named after d with link, creating the object
// directory objects/xx on first use (directories are never removed).
func (s *Store) linkObject(d Digest, link func(final string) error) error {
	final := s.Path(d)
	err := link(final)
	if errors.Is(err, fs.ErrNotExist) {
		if merr := os.Mkdir(filepath.Dir(final), 0o755); merr != nil && !errors.Is(merr, fs.ErrExist) {
			return merr
		}
		if s.opts.Sync == SyncEach {
			if serr := s.syncDir(filepath.Dir(filepath.Dir(final))); serr != nil {
				return serr
			}
		}
		err = link(final)
	}
	return err
}

// syncFile syncs f's data unless the policy is SyncNever.
func (s *Store) syncFile(f *os.File) error {
	if s.opts.Sync == SyncNever {
		return nil
	}
	return unix.Fdatasync(int(f.Fd()))
}

// syncFS syncs the whole file system holding the store (SyncBatch's one
// flush per committed layer).
func (s *Store) syncFS() error {
	fd, err := unix.Open(s.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", s.root, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", s.root, err)
	}
	return nil
}

// syncDir syncs the directory at path unless the policy is SyncNever.
func (s *Store) syncDir(path string) error {
	if s.opts.Sync == SyncNever {
		return nil
	}
	return atomicfile.SyncDir(path)
}
