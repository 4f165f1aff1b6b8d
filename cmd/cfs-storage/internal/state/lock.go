package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held flock(2) lock on a file or directory. The lock belongs
// to the open file description: it is released when every descriptor of
// it is closed, a child process's inherited copy included, so a process
// killed with SIGKILL releases it (and an entry whose lock can be taken
// is stale).
type Lock struct {
	f *os.File
}

// File returns the locked file, to hand to a child process (exec.Cmd's
// ExtraFiles) that must hold the lock as long as it lives.
func (l *Lock) File() *os.File { return l.f }

// Release unlocks and closes.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the lock
	l.f = nil
	return err
}

// lockPath opens path (a file or a directory; with create, a file made
// if missing) and locks it with how (unix.LOCK_SH or unix.LOCK_EX,
// optionally | unix.LOCK_NB). With LOCK_NB, a lock held elsewhere gives
// (nil, nil).
func lockPath(path string, how int, create bool) (*Lock, error) {
	var f *os.File
	var err error
	if create {
		f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	} else {
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, err
	}
	if err := flock(f, how); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// inUse reports whether path is locked by someone (this process's other
// descriptors included). A missing path is not in use.
func inUse(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	switch err := flock(f, unix.LOCK_SH|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	return false, nil
}

// newPrefix names directories being created: made under this name,
// locked, then renamed, so that a reaper never sees a final name
// unlocked.
const newPrefix = ".new-"

// createLocked makes directory parent/name and returns it locked
// exclusively. It fails if parent/name exists.
func createLocked(parent, name string) (*Lock, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, newPrefix)
	if err != nil {
		return nil, err
	}
	l, err := lockPath(tmp, unix.LOCK_EX|unix.LOCK_NB, false)
	if err == nil && l == nil {
		err = fmt.Errorf("lock %s: held by another process", tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	final := filepath.Join(parent, name)
	if err := os.Rename(tmp, final); err != nil {
		l.Release()
		os.Remove(tmp)
		return nil, err
	}
	return l, nil
}

// staleNewAge is how old an unlocked ".new-" directory must be to be
// stale: its creator locks it microseconds after making it.
const staleNewAge = time.Minute

// reapDir removes the entries of dir that no process holds locked and
// returns how many it removed. keep, when set, vetoes removing an entry.
func reapDir(dir string, keep func(name string) bool) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		if keep != nil && keep(name) {
			continue
		}
		if strings.HasPrefix(name, newPrefix) {
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < staleNewAge {
				continue
			}
		}
		l, err := lockPath(p, unix.LOCK_EX|unix.LOCK_NB, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if l == nil {
			continue // in use
		}
		err = os.RemoveAll(p)
		l.Release()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
