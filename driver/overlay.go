package driver

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// overlaySpec is one overlay mount: its layers, options and flags.
type overlaySpec struct {
	// Lower is the metadata lower layer (the EROFS mount, named by
	// /proc/self/fd/N, or an empty directory).
	Lower string
	// Data are the data-only lower layers (object stores), in lookup
	// order.
	Data []string
	// Upper and Work are the writable layer's directories, or "".
	Upper, Work string
	// Options are further overlay options ("key=value" or "flag"):
	// metacopy, redirect_dir, volatile, the user's mountopt data.
	Options []string
	// Flags are mount flags (MS_RDONLY, MS_NODEV, …).
	Flags uintptr
	// Label is the SELinux context of the files, or "".
	Label string
}

// mountAttrs are the mount flags the new mount API sets per mount.
var mountAttrs = []struct {
	flag uintptr
	attr int
}{
	{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
	{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
	{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
	{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	{unix.MS_NOATIME, unix.MOUNT_ATTR_NOATIME},
	{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
	{unix.MS_RELATIME, unix.MOUNT_ATTR_RELATIME},
	{unix.MS_STRICTATIME, unix.MOUNT_ATTR_STRICTATIME},
}

// mountOverlay mounts spec at target. Every path is passed to the kernel
// in an fsconfig call of its own ("lowerdir+" and "datadir+" as they are,
// "upperdir" and "workdir" escaped as overlayfs unescapes them), so paths
// holding ',', ':' or '\' work. A kernel
// without "lowerdir+" (before 6.8) gets the classic mount(2) option
// string, escaped.
func mountOverlay(target string, spec overlaySpec) error {
	err := fsmountOverlay(target, spec)
	if errors.Is(err, errNoLowerdirPlus) {
		return legacyMountOverlay(target, spec)
	}
	return err
}

var errNoLowerdirPlus = errors.New("overlay: no lowerdir+ option")

func fsmountOverlay(target string, spec overlaySpec) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fsfd, key, value); err != nil {
			return fmt.Errorf("overlay option %s=%s: %w%s", key, value, err, fsLog(fsfd))
		}
		return nil
	}
	if err := unix.FsconfigSetString(fsfd, "source", "overlay"); err != nil {
		return fmt.Errorf("overlay source: %w%s", err, fsLog(fsfd))
	}
	if err := unix.FsconfigSetString(fsfd, "lowerdir+", spec.Lower); err != nil {
		if errors.Is(err, unix.EINVAL) && !strings.Contains(fsLog(fsfd), spec.Lower) {
			return errNoLowerdirPlus
		}
		return fmt.Errorf("overlay lower layer %s: %w%s", spec.Lower, err, fsLog(fsfd))
	}
	var errs []error
	for _, dir := range spec.Data {
		errs = append(errs, set("datadir+", dir))
	}
	if spec.Upper != "" {
		// Unlike "lowerdir+", these two are unescaped by the kernel.
		errs = append(errs, set("upperdir", escapeOverlayPath(spec.Upper)), set("workdir", escapeOverlayPath(spec.Work)))
	}
	for _, o := range spec.Options {
		if k, v, ok := strings.Cut(o, "="); ok {
			errs = append(errs, set(k, v))
		} else if err := unix.FsconfigSetFlag(fsfd, o); err != nil {
			errs = append(errs, fmt.Errorf("overlay option %s: %w%s", o, err, fsLog(fsfd)))
		}
	}
	if spec.Label != "" {
		errs = append(errs, set("context", spec.Label))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	attrs, err := attrsOf(spec.Flags)
	if err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create overlay: %w%s", err, fsLog(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w%s", err, fsLog(fsfd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move overlay mount to %s: %w", target, err)
	}
	return nil
}

// attrsOf turns mount flags into mount attributes; a flag the new API
// has no attribute for is refused.
func attrsOf(flags uintptr) (int, error) {
	attrs := 0
	for _, m := range mountAttrs {
		if flags&m.flag != 0 {
			attrs |= m.attr
			flags &^= m.flag
		}
	}
	if flags != 0 {
		return 0, fmt.Errorf("mount flags %#x are not supported for overlay mounts", flags)
	}
	return attrs, nil
}

// fsLog drains the messages the kernel left on a file system context
// (": message; message"), or "".
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for i := 0; i < 16; i++ {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return ": " + strings.Join(msgs, "; ")
}

// legacyMountOverlay mounts with mount(2) and one option string, the
// paths escaped as overlayfs reads them.
func legacyMountOverlay(target string, spec overlaySpec) error {
	lower := escapeOverlayPath(spec.Lower)
	for _, dir := range spec.Data {
		lower += "::" + escapeOverlayPath(dir)
	}
	data := []string{"lowerdir=" + lower}
	if spec.Upper != "" {
		data = append(data, "upperdir="+escapeOverlayPath(spec.Upper), "workdir="+escapeOverlayPath(spec.Work))
	}
	data = append(data, spec.Options...)
	if spec.Label != "" {
		data = append(data, `context="`+spec.Label+`"`)
	}
	joined := strings.Join(data, ",")
	if err := unix.Mount("overlay", target, "overlay", spec.Flags, joined); err != nil {
		return fmt.Errorf("mount overlay -o %s: %w", joined, err)
	}
	return nil
}

// escapeOverlayPath escapes '\', ',' and ':' with a backslash, as
// overlayfs unescapes its layer paths.
func escapeOverlayPath(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`)
	return r.Replace(p)
}
