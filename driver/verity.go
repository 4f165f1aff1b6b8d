package driver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// fs-verity in the driver (option verity):
//
//   - none: nothing is enabled; images are checked in user space against
//     their recorded digests before their first use (imageChecks).
//   - auto: the object store enables fs-verity on new objects where the
//     file system supports it (dedup.VerityAuto), and flattened images
//     get it too. The kernel then checks every block read from them
//     against their Merkle trees. Overlay mounts do not require digests:
//     objects stored before may lack fs-verity.
//   - require: every object and flattened image has fs-verity; the
//     overlay is mounted with verity=require, so that opening a file
//     fails (EIO) unless its object's fs-verity digest is the one its
//     image records (trusted.overlay.metacopy); and the image's own
//     digest, measured by the kernel, must be the recorded one before it
//     is mounted (composefs's digest= option, as libcomposefs checks it).

// imageVerity reports whether flattened images get fs-verity: whenever
// new objects get it (require, or auto where supported).
func (d *core) imageVerity() bool { return d.objects.VerityEnabled() }

// overlayVerity is the overlay's verity option for the store's mode, or
// "" for none.
func (d *core) overlayVerity() string {
	if d.opts.Verity == "require" {
		return "verity=require"
	}
	return ""
}

// checkFlatImage checks the cached flattened image at path before a
// mount. Without fs-verity it is the user-space check, once per file in
// this open store. With fs-verity the kernel's measurement must be the
// recorded digest (cheap: the kernel checks every block as it is read);
// an image that has no fs-verity yet (written before the store had it)
// is checked in user space, then gets it. The mount itself measures the
// file it mounts again (openImage).
func (d *core) checkFlatImage(path string) error {
	if !d.imageVerity() {
		return d.checks.verify(path)
	}
	switch err := measureImage(path); {
	case err == nil:
		return nil
	case d.opts.Verity == "auto" && errors.Is(err, fsverity.ErrNotSupported):
		// auto, images on a file system without fs-verity (the objects
		// have it): as without fs-verity.
		return d.checks.verify(path)
	case !errors.Is(err, fsverity.ErrNotEnabled):
		return err
	}
	if err := d.checks.verify(path); err != nil {
		return err
	}
	for try := 0; ; try++ {
		err := enableFileVerity(path)
		switch {
		case err == nil:
			return measureImage(path)
		case d.opts.Verity == "auto" && errors.Is(err, fsverity.ErrNotSupported):
			return nil
		case errors.Is(err, unix.EBUSY) && try < 100:
			// Another process is enabling it right now.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return fmt.Errorf("image %s: %w", path, err)
	}
}

// openImage makes the detached EROFS mount of a flattened image. With
// fs-verity on images the file is opened first, the kernel's measurement
// of it compared with the recorded digest, and the mount made from that
// open file (/proc/self/fd/N): what was measured is what is mounted.
func (d *core) openImage(image string) (int, error) {
	if !d.imageVerity() {
		return openErofs(image)
	}
	f, err := os.Open(image)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	if err := matchMeasured(f, image); err != nil {
		// auto: an image on a file system without fs-verity was checked
		// in user space (checkFlatImage).
		if d.opts.Verity != "auto" || !errors.Is(err, fsverity.ErrNotSupported) {
			return -1, err
		}
	}
	fd, err := openErofs("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return -1, fmt.Errorf("image %s: %w", image, err)
	}
	return fd, nil
}

// measureImage compares the kernel's fs-verity measurement of the image
// at path with its recorded digest.
func measureImage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return matchMeasured(f, path)
}

// matchMeasured compares the fs-verity digest the kernel measures for
// the open image f (FS_IOC_MEASURE_VERITY) with the one recorded beside
// it. An image without fs-verity fails with fsverity.ErrNotEnabled, a
// different digest with ErrImageDamaged.
func matchMeasured(f *os.File, path string) error {
	m, err := fsverity.Measure(f.Fd())
	if err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	recorded, err := os.ReadFile(path + digestSuffix)
	if err != nil {
		return fmt.Errorf("image %s: no recorded digest: %w", path, err)
	}
	if got := fsverity.Hex(m); !bytes.Equal(bytes.TrimSpace(recorded), []byte(got)) {
		return fmt.Errorf("image %s: fs-verity digest measured by the kernel is %s, recorded %s: %w", path, got, bytes.TrimSpace(recorded), ErrImageDamaged)
	}
	return nil
}

// enableFileVerity enables fs-verity on the file at path (which must
// have no writer open).
func enableFileVerity(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return fsverity.Enable(f.Fd())
}
