package driver

import (
	"bytes"
	"fmt"
	"os"

	"github.com/cfs-storage/cfs-storage/dedup"
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

// overlayVerity is the overlay's verity option for the store's mode, or
// "" for none.
func (d *core) overlayVerity() string {
	if d.opts.Verity == dedup.VerityRequire {
		return "verity=require"
	}
	return ""
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
