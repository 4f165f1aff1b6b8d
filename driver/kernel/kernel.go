// Package kernel probes what the running kernel offers the cfs driver:
// EROFS (and whether it mounts straight from an image file), overlayfs
// with data-only lower layers, and fs-verity on the store's filesystem.
// A probe runs real mounts in a scratch directory; its result is meant to
// be kept on the struct that needs it, not in a global.
package kernel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Features is what a probe found.
type Features struct {
	// Erofs is true when the kernel lists erofs in /proc/filesystems.
	Erofs bool
	// Overlay is true when the kernel lists overlay in /proc/filesystems.
	Overlay bool
	// DataOnlyLower is true when overlayfs mounted a lower layer that
	// redirects a metacopy file into a data-only lower ("lower::data")
	// and served that file's content.
	DataOnlyLower bool
	// DataOnlyLowerErr says why DataOnlyLower is false.
	DataOnlyLowerErr error
}

// Filesystems returns the filesystem types the kernel knows, from
// /proc/filesystems.
func Filesystems() (map[string]bool, error) {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return nil, fmt.Errorf("kernel: list filesystems: %w", err)
	}
	defer f.Close()
	fs := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 {
			fs[fields[len(fields)-1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kernel: read /proc/filesystems: %w", err)
	}
	return fs, nil
}

// Probe checks the kernel's features, mounting in a fresh directory under
// scratch, which it removes afterwards. It needs root for the mount tests;
// without root those features are reported missing with the reason.
func Probe(ctx context.Context, scratch string) (Features, error) {
	fs, err := Filesystems()
	if err != nil {
		return Features{}, err
	}
	feat := Features{Erofs: fs["erofs"], Overlay: fs["overlay"]}
	if !feat.Overlay {
		feat.DataOnlyLowerErr = errors.New("overlay is not in /proc/filesystems")
		return feat, nil
	}
	dir, err := os.MkdirTemp(scratch, "probe-")
	if err != nil {
		return feat, fmt.Errorf("kernel: probe scratch dir: %w", err)
	}
	defer os.RemoveAll(dir)
	feat.DataOnlyLowerErr = probeDataOnlyLower(ctx, dir)
	feat.DataOnlyLower = feat.DataOnlyLowerErr == nil
	return feat, nil
}

// probeDataOnlyLower mounts meta::data where meta holds a metacopy file
// redirected to data/ab/cd, and reads it back through the overlay.
func probeDataOnlyLower(ctx context.Context, dir string) error {
	const content = "cfs data-only lower probe\n"
	meta, data, mnt := filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	for _, d := range []string{meta, filepath.Join(data, "ab"), mnt} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("kernel: probe: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "ab", "cd"), []byte(content), 0o644); err != nil {
		return fmt.Errorf("kernel: probe: %w", err)
	}
	stub := filepath.Join(meta, "f")
	if err := os.WriteFile(stub, nil, 0o644); err != nil {
		return fmt.Errorf("kernel: probe: %w", err)
	}
	if err := os.Truncate(stub, int64(len(content))); err != nil {
		return fmt.Errorf("kernel: probe: %w", err)
	}
	for name, value := range map[string]string{
		"trusted.overlay.redirect": "/ab/cd",
		"trusted.overlay.metacopy": "",
	} {
		if err := unix.Setxattr(stub, name, []byte(value), 0); err != nil {
			return fmt.Errorf("kernel: probe: set %s (needs root): %w", name, err)
		}
	}
	opts := "lowerdir=" + meta + "::" + data + ",metacopy=on,redirect_dir=on"
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		return fmt.Errorf("kernel: mount overlay -o %s: %w", opts, err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	if err := ctx.Err(); err != nil {
		return err
	}
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	if err != nil {
		return fmt.Errorf("kernel: read through data-only lower: %w", err)
	}
	if string(got) != content {
		return fmt.Errorf("kernel: data-only lower served %q, want %q", got, content)
	}
	return nil
}
