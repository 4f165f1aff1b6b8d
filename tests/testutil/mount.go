package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mount mounts source on target and registers a cleanup that unmounts it
// (lazily, so a busy mount never outlives a failed test). The test fails
// if the mount fails.
func Mount(t testing.TB, source, target, fstype string, flags uintptr, data string) {
	t.Helper()
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		t.Fatalf("mount -t %s %s %s -o %q: %v", fstype, source, target, data, err)
	}
	t.Cleanup(func() { Unmount(t, target) })
}

// Unmount lazily unmounts target; a target that is not mounted is not an
// error, so cleanups may run after a test already unmounted.
func Unmount(t testing.TB, target string) {
	t.Helper()
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		t.Errorf("unmount %s: %v", target, err)
	}
}

// MountErofs mounts the EROFS image file read-only on target, straight
// from the file (the kernel's file-backed mount, no loop device).
func MountErofs(t testing.TB, image, target string) {
	t.Helper()
	Mount(t, image, target, "erofs", unix.MS_RDONLY, "")
}

// Overlay describes an overlayfs mount: Lower layers top first, DataLower
// the data-only layers (after "::"), and Upper/Work for a writable mount.
type Overlay struct {
	Lower     []string
	DataLower []string
	Upper     string
	Work      string
}

// Options returns the mount data string for o, with metacopy and
// redirect_dir on, as composefs needs.
func (o Overlay) Options() string {
	lower := strings.Join(o.Lower, ":")
	if len(o.DataLower) > 0 {
		lower += "::" + strings.Join(o.DataLower, "::")
	}
	opts := []string{"lowerdir=" + lower, "metacopy=on", "redirect_dir=on"}
	if o.Upper != "" {
		opts = append(opts, "upperdir="+o.Upper, "workdir="+o.Work)
	}
	return strings.Join(opts, ",")
}

// MountOverlay mounts o on target (read-only when it has no upper layer).
func MountOverlay(t testing.TB, o Overlay, target string) {
	t.Helper()
	var flags uintptr
	if o.Upper == "" {
		flags = unix.MS_RDONLY
	}
	Mount(t, "overlay", target, "overlay", flags, o.Options())
}

// MountedAt reports whether target is a mount point, from the mount
// table (/proc/thread-self/mountinfo).
func MountedAt(target string) (bool, error) {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target))
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	return len(ms) > 0, nil
}
