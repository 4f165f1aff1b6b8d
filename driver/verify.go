package driver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// imageChecks remembers which image files this open store has checked
// against the fs-verity digests recorded beside them, by file identity:
// a file replaced or modified since is checked again. Every image is
// checked when it is first read or mounted, so a damaged image is
// refused instead of mounted, or flattened into a new image that would
// get a fresh, matching digest.
type imageChecks struct {
	mu   sync.Mutex
	good map[string]fileIdentity
}

// fileIdentity tells whether a file is still the one checked.
type fileIdentity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func identityOf(st *unix.Stat_t) fileIdentity {
	return fileIdentity{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// read returns the bytes of the image at path, checked against its
// recorded digest unless this file was checked before.
func (c *imageChecks) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	data := make([]byte, st.Size)
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	id := identityOf(&st)
	if c.known(path, id) {
		return data, nil
	}
	sum, _, err := fsverity.Digest(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := matchRecorded(path, sum); err != nil {
		return nil, err
	}
	c.remember(path, id)
	return data, nil
}

// verify checks the image at path (for a mount, which reads it through
// the kernel) unless this file was checked before.
func (c *imageChecks) verify(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if c.known(path, identityOf(&st)) {
		return nil
	}
	_, err := c.read(path)
	return err
}

// trust records the image just written at path as checked: its digest
// was computed from the bytes written.
func (c *imageChecks) trust(path string) {
	var st unix.Stat_t
	if unix.Stat(path, &st) == nil {
		c.remember(path, identityOf(&st))
	}
}

func (c *imageChecks) known(path string, id fileIdentity) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	got, ok := c.good[path]
	return ok && got == id
}

func (c *imageChecks) remember(path string, id fileIdentity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.good == nil {
		c.good = map[string]fileIdentity{}
	}
	c.good[path] = id
}

// matchRecorded compares an image's digest with the one recorded beside
// it (path + ".digest").
func matchRecorded(path string, sum [fsverity.Size]byte) error {
	recorded, err := os.ReadFile(path + digestSuffix)
	if err != nil {
		return fmt.Errorf("image %s: no recorded digest: %w", path, err)
	}
	if got := fsverity.Hex(sum); !bytes.Equal(bytes.TrimSpace(recorded), []byte(got)) {
		return fmt.Errorf("image %s: digest is %s, recorded %s: %w", path, got, bytes.TrimSpace(recorded), ErrImageDamaged)
	}
	return nil
}

// ErrImageDamaged is wrapped by errors about an image whose bytes no
// longer match the digest recorded when it was written.
var ErrImageDamaged = errors.New("cfs: the image is damaged")
