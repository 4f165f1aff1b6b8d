package testutil

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

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

// MountedAt reports whether target is a mount point, from /proc/self/mountinfo.
func MountedAt(target string) (bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountPath(f[4]) == target {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMountPath undoes the octal escapes (\040 for space, …) that
// mountinfo uses in paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
