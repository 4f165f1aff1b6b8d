// Package state keeps what cfs-storage's commands write beside the store
// other than c/storage's own records, and cleans up after the commands
// that were killed:
//
//   - <graphroot>/cfs-storage/tmp/<random>/: one directory per command
//     that copies images, for c/image's big temporary files (the blob
//     copies a pull makes; c/image's default is /var/tmp). A command
//     holds its directory locked and removes it when done;
//   - <runroot>/cfs-storage/run/<container ID>/: a running container's
//     OCI bundle and runtime state, locked while the runtime runs (the
//     runtime inherits the lock), removed with the run or the container;
//   - <graphroot>/cfs-storage/layers.lock: the layer gate. A command that
//     creates layers an image or a container does not hold yet (a pull,
//     whose layers exist before its image) holds it shared; gc removes
//     layers nobody uses only while it holds it exclusively.
//
// Every lock is flock(2): a killed process releases it, so an unlocked
// directory is stale. Reap, called when a command opens the store,
// removes the stale ones.
package state

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	storage "go.podman.io/storage"
	"golang.org/x/sys/unix"
)

const dirName = "cfs-storage"

// TempRoot is the directory of the commands' temporary directories.
func TempRoot(store storage.Store) string {
	return filepath.Join(store.GraphRoot(), dirName, "tmp")
}

// RunRoot is the directory of the containers' run directories.
func RunRoot(store storage.Store) string {
	return filepath.Join(store.RunRoot(), dirName, "run")
}

// RunDir is the run directory of container id.
func RunDir(store storage.Store, id string) string {
	return filepath.Join(RunRoot(store), id)
}

func gatePath(store storage.Store) string {
	return filepath.Join(store.GraphRoot(), dirName, "layers.lock")
}

// TempDir is a command's directory for big temporary files.
type TempDir struct {
	Path string
	lock *Lock
}

// NewTempDir makes and locks a temporary directory under TempRoot.
func NewTempDir(store storage.Store) (*TempDir, error) {
	root := TempRoot(store)
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("%d-%x", os.Getpid(), rnd)
	l, err := createLocked(root, name)
	if err != nil {
		return nil, fmt.Errorf("make a temporary directory in %s: %w", root, err)
	}
	return &TempDir{Path: filepath.Join(root, name), lock: l}, nil
}

// Remove deletes the directory and releases it.
func (d *TempDir) Remove() error {
	err := os.RemoveAll(d.Path)
	return errors.Join(err, d.lock.Release())
}

// LockRun makes container id's run directory and returns it locked. It
// fails if the directory exists (a run of the container is in progress,
// or a stale one is not reaped yet).
func LockRun(store storage.Store, id string) (*Lock, error) {
	l, err := createLocked(RunRoot(store), id)
	if err != nil {
		return nil, fmt.Errorf("make the run directory of container %.12s: %w", id, err)
	}
	return l, nil
}

// Running reports whether a run of container id is in progress: its run
// directory is locked by cfs-storage run or by the runtime it started.
func Running(store storage.Store, id string) (bool, error) {
	return inUse(RunDir(store, id))
}

// RemoveRun removes container id's run directory unless a run holds it.
func RemoveRun(store storage.Store, id string) error {
	l, err := lockPath(RunDir(store, id), unix.LOCK_EX|unix.LOCK_NB, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("container %.12s is running", id)
	}
	defer l.Release()
	return os.RemoveAll(RunDir(store, id))
}

// HoldLayers takes the layer gate shared, waiting while gc holds it.
func HoldLayers(store storage.Store) (*Lock, error) {
	p := gatePath(store)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	return lockPath(p, unix.LOCK_SH, true)
}

// TryLayersExclusive takes the layer gate exclusively if no command
// holds it; (nil, nil) when one does.
func TryLayersExclusive(store storage.Store) (*Lock, error) {
	p := gatePath(store)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	return lockPath(p, unix.LOCK_EX|unix.LOCK_NB, true)
}

// Reaped counts what Reap removed.
type Reaped struct {
	TempDirs, RunDirs int
}

// Reap removes the temporary and run directories no process holds: those
// of killed commands. A run directory is removed only once its
// container's runtime is gone too (it holds the lock while it runs).
func Reap(store storage.Store) (Reaped, error) {
	var r Reaped
	var err1, err2 error
	r.TempDirs, err1 = reapDir(TempRoot(store), nil)
	r.RunDirs, err2 = reapDir(RunRoot(store), nil)
	return r, errors.Join(err1, err2)
}
