// Package atomicfile replaces a file atomically: the new content is
// written to a temporary file in the target's directory, flushed as the
// caller asks, and renamed over the target. Readers see the old file or
// the new one, never a mix. A crash can leave a temporary file behind,
// named by the caller's pattern so that its recovery code finds it (the
// driver removes ".tmp-*", dedup's GC refs/.tmp-*).
package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Flush says how the temporary file is made durable before the rename.
type Flush int

const (
	// FlushFile fsyncs the file (fsync(2)): the default.
	FlushFile Flush = iota
	// FlushData fdatasyncs the file (fdatasync(2)): its data and the
	// metadata needed to read it back.
	FlushData
	// FlushNone does not flush: for caches, which a machine crash may
	// leave empty or torn.
	FlushNone
)

// Options tune Write. The zero value writes a ".tmp-<name>-*" temporary
// file with mode 0600, fsyncs it, renames it into place and does not
// sync the directory.
type Options struct {
	// Pattern names the temporary file, as os.CreateTemp's pattern (a
	// "*" is replaced by a random string, else one is appended). Empty
	// means ".tmp-" + the target's base name + "-".
	Pattern string
	// Perm, when not zero, is set on the temporary file (with chmod, so
	// the umask does not apply) before anything is written to it. Zero
	// keeps os.CreateTemp's 0600.
	Perm fs.FileMode
	// Flush is how the file is flushed before the rename.
	Flush Flush
	// SyncDir fsyncs the directory after the rename, so that the rename
	// itself is durable when Write returns.
	SyncDir bool
	// BeforeRename, when set, runs after the temporary file is written,
	// flushed and closed, just before the rename; tmp is its path. An
	// error leaves the target as it was.
	BeforeRename func(tmp string) error
}

// Test seams: the flushes Write makes.
var (
	fsync     = func(f *os.File) error { return f.Sync() }
	fdatasync = func(f *os.File) error {
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
		}
		return nil
	}
	syncDir = SyncDir
)

// Write replaces the file at path with what write writes. On any error
// before the rename, the temporary file is removed and the target is
// left as it was. Errors name path and wrap the cause, which may be
// write's or BeforeRename's own error.
func Write(path string, o Options, write func(io.Writer) error) error {
	if err := replace(path, o, write); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteFile replaces the file at path with data (see Write).
func WriteFile(path string, data []byte, o Options) error {
	return Write(path, o, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func replace(path string, o Options, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	pattern := o.Pattern
	if pattern == "" {
		pattern = ".tmp-" + filepath.Base(path) + "-"
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = fill(f, o, write)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && o.BeforeRename != nil {
		err = o.BeforeRename(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if o.SyncDir {
		return syncDir(dir)
	}
	return nil
}

// fill sets the temporary file's mode, writes it and flushes it.
func fill(f *os.File, o Options, write func(io.Writer) error) error {
	if o.Perm != 0 {
		if err := f.Chmod(o.Perm); err != nil {
			return err
		}
	}
	if err := write(f); err != nil {
		return err
	}
	switch o.Flush {
	case FlushFile:
		return fsync(f)
	case FlushData:
		return fdatasync(f)
	case FlushNone:
		return nil
	}
	return fmt.Errorf("atomicfile: unknown flush mode %d", o.Flush)
}

// SyncDir fsyncs the directory dir, so that the creations, renames and
// removals of entries in it so far are durable. Errors are
// *fs.PathError naming dir.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
