package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// mountState is one mounted layer: how many Gets it has had in this
// process.
type mountState struct {
	count int
}

// mountOptions are what Get was asked for.
type mountOptions struct {
	ReadOnly   bool
	MountLabel string
	// Volatile skips the overlay's syncs (writable layers only).
	Volatile bool
	Extra    []string
	// Shift is the ID mapping the mount shows owners through (an
	// idmapped mount of the layer's image, idmap.go), or nil.
	Shift *idMapping
}

func (d *core) mountDir(id string) string  { return filepath.Join(d.run, "mnt", id) }
func (d *core) mergedDir(id string) string { return filepath.Join(d.mountDir(id), "merged") }
func (d *core) lowerMount(id string) string {
	return filepath.Join(d.mountDir(id), "lower")
}

// get mounts layer id (if not yet mounted) and returns its root: the
// flattened image of its chain as one EROFS mount, and one overlay with
// the object store as data-only lower and, for a writable layer, its
// upper directory. Nested gets are counted; a mount made by another
// process is reused.
func (d *core) get(ctx context.Context, id string, opts mountOptions) (string, error) {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return "", err
	}
	if d.layers.readOnly(id) {
		// Mounted read-only, as c/storage mounts read-only layers; one
		// still writable there is mounted from its snapshot here.
		if !opts.ReadOnly {
			return "", errReadOnly(id, "mount writable")
		}
		if !m.Sealed {
			if err := d.seal(ctx, id); err != nil {
				return "", fmt.Errorf("cfs: mount %s: %w", id, err)
			}
			if m, err = d.layers.readMeta(id); err != nil {
				return "", err
			}
		}
	}
	image := ""
	switch {
	case m.Sealed:
		image = d.images.path(id)
		err = d.ensureFlat(ctx, id)
		if err == nil && !opts.ReadOnly && !m.Upper {
			m, err = d.openUpper(id, m)
		}
	case m.Base:
		// A remapped writable layer: its base image is mounted as it is.
		image = d.layers.baseImage(id)
		err = d.images.checkCached(image)
	case m.Parent != "":
		image = d.images.path(m.Parent)
		err = d.ensureFlat(ctx, m.Parent)
	}
	if err != nil {
		return "", fmt.Errorf("cfs: mount %s: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	merged := d.mergedDir(id)
	if st, ok := d.mounts[id]; ok {
		st.count++
		return merged, nil
	}
	if isMountPoint(merged) {
		d.mounts[id] = &mountState{count: 1}
		return merged, nil
	}
	if err := d.mount(id, m, image, opts); err != nil {
		return "", fmt.Errorf("cfs: mount %s: %w", id, err)
	}
	d.mounts[id] = &mountState{count: 1}
	return merged, nil
}

func (d *core) mount(id string, m layerMeta, image string, opts mountOptions) error {
	merged := d.mergedDir(id)
	if err := os.MkdirAll(merged, 0o700); err != nil {
		return err
	}
	flags, extra, err := d.opts.mountFlagsAndData(opts.Extra)
	if err != nil {
		return err
	}
	base := []string{"metacopy=on", "redirect_dir=on"}
	if v := d.overlayVerity(); v != "" {
		base = append(base, v)
	}
	spec := overlaySpec{
		Lower:   filepath.Join(d.home, "empty"),
		Options: append(base, extra...),
		Flags:   flags,
		Label:   opts.MountLabel,
	}
	erofsFD := -1
	if image != "" {
		// The EROFS mount is detached (in no mount table) and named to
		// overlay through our descriptor; it goes away with the overlay.
		// With fs-verity the image's measured digest is checked first.
		fd, err := d.images.open(image)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if opts.Shift != nil {
			if err := opts.Shift.apply(fd); err != nil {
				return err
			}
		}
		spec.Lower, spec.Data = "/proc/self/fd/"+strconv.Itoa(fd), d.contents.dataDirs()
		erofsFD = fd
	} else if err := os.MkdirAll(spec.Lower, 0o755); err != nil {
		return err
	}
	hasUpper := !m.Sealed || m.Upper
	if !hasUpper || opts.ReadOnly {
		spec.Flags |= unix.MS_RDONLY
	}
	if hasUpper {
		// A volatile mount leaves work/work/incompat/volatile behind, and
		// the kernel refuses the next mount while it is there; remove it
		// first, as c/storage's overlay driver does.
		if err := os.RemoveAll(filepath.Join(d.layers.workDir(id), "work", "incompat", "volatile")); err != nil {
			return fmt.Errorf("remove the volatile marker: %w", err)
		}
		spec.Upper, spec.Work = d.layers.upperDir(id), d.layers.workDir(id)
		if opts.Shift != nil {
			// The upper directory is not idmapped (overlay would be
			// read-only): what is written there has host IDs, and its
			// root must be the mapped root's, as the container's root.
			if err := opts.Shift.chownRoot(spec.Upper); err != nil {
				return err
			}
		}
		if opts.Volatile {
			spec.Options = append(spec.Options, "volatile")
		}
	}
	if erofsFD >= 0 {
		return d.mountOnErofs(d.lowerMount(id), merged, spec, erofsFD)
	}
	return mountOverlay(merged, spec)
}

// mountOnErofs mounts the overlay of spec, whose lower layer is the
// detached EROFS mount erofsFD. Where the kernel refuses a detached
// layer, the EROFS mount is attached at lower while the overlay is
// created (the overlay keeps a private clone of it), then detached
// again, as libcomposefs does on such kernels.
func (d *core) mountOnErofs(lower, merged string, spec overlaySpec, erofsFD int) error {
	if !d.detachedRefused.Load() {
		err := mountOverlay(merged, spec)
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		if aerr := mountAttached(lower, merged, spec, erofsFD); aerr != nil {
			return fmt.Errorf("%w (and with the EROFS mount attached: %w)", err, aerr)
		}
		d.detachedRefused.Store(true)
		return nil
	}
	return mountAttached(lower, merged, spec, erofsFD)
}

// mountAttached attaches the detached EROFS mount erofsFD at lower (an
// idmapped one keeps its mapping), mounts the overlay on it, and
// detaches it again.
func mountAttached(lower, merged string, spec overlaySpec, erofsFD int) error {
	if err := os.MkdirAll(lower, 0o700); err != nil {
		return err
	}
	if err := unix.MoveMount(erofsFD, "", unix.AT_FDCWD, lower, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the EROFS mount at %s: %w", lower, err)
	}
	defer unix.Unmount(lower, unix.MNT_DETACH)
	spec.Lower = lower
	return mountOverlay(merged, spec)
}

// put releases one get of id; the last one unmounts, and folds what a
// writable mount of a sealed layer changed into the layer. A layer
// mounted by another process (not counted here) is unmounted too.
func (d *core) put(id string) error {
	d.mu.Lock()
	if st, ok := d.mounts[id]; ok {
		st.count--
		if st.count > 0 {
			d.mu.Unlock()
			return nil
		}
	}
	err := d.unmountLocked(id)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	return d.foldUpper(context.Background(), id)
}

// unmountAll unmounts id whatever its count (for removal).
func (d *core) unmountAll(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unmountLocked(id)
}

func (d *core) unmountLocked(id string) error {
	delete(d.mounts, id)
	// lowerMount is where versions before detached EROFS mounts mounted
	// the image; a store they left mounted is unmounted there too.
	for _, dir := range []string{d.mergedDir(id), d.lowerMount(id)} {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("cfs: unmount %s: %w", dir, err)
		}
	}
	if m, err := d.layers.readMeta(id); err == nil && m.Sealed && !m.Upper {
		d.layers.dropUpper(id)
	}
	return nil
}

// cleanup unmounts every layer this process still has mounted.
func (d *core) cleanup() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for id := range d.mounts {
		errs = append(errs, d.unmountLocked(id))
	}
	return errors.Join(errs...)
}

func (d *core) mountedElsewhere(id string) bool { return isMountPoint(d.mergedDir(id)) }

// isMountPoint reports whether dir is the root of a mount: its device
// differs from its parent's.
func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// openErofs mounts an EROFS image file read-only as a detached mount
// (fsopen, fsconfig, fsmount) and returns the mount's descriptor: straight
// from the file where the kernel can, else through a loop device.
func openErofs(image string) (int, error) {
	fd, err := fsmountErofs(image)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOTBLK) {
		return -1, fmt.Errorf("mount erofs %s: %w", image, err)
	}
	dev, lerr := attachLoop(image)
	if lerr != nil {
		return -1, fmt.Errorf("mount erofs %s: no file-backed mounts (%v) and no loop device: %w", image, err, lerr)
	}
	if fd, err = fsmountErofs(dev); err != nil {
		return -1, fmt.Errorf("mount erofs %s via %s: %w", image, dev, err)
	}
	return fd, nil
}

// fsmountErofs creates a read-only EROFS superblock from source and a
// detached mount of it.
func fsmountErofs(source string) (int, error) {
	fsfd, err := unix.Fsopen("erofs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", source); err != nil {
		return -1, fmt.Errorf("fsconfig source: %w", err)
	}
	if err := unix.FsconfigSetFlag(fsfd, "ro"); err != nil {
		return -1, fmt.Errorf("fsconfig ro: %w", err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, err // ENOTBLK: no file-backed mounts
	}
	fd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		return -1, fmt.Errorf("fsmount: %w", err)
	}
	return fd, nil
}

// attachLoop binds image to a free loop device, read-only and cleared
// automatically when its last user (the mount) goes away.
func attachLoop(image string) (string, error) {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open /dev/loop-control: %w", err)
	}
	defer unix.Close(ctl)
	n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	file, err := unix.Open(image, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", image, err)
	}
	defer unix.Close(file)
	loop, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(loop)
	cfg := unix.LoopConfig{Fd: uint32(file)}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	if err := unix.IoctlLoopConfigure(loop, &cfg); err != nil {
		return "", fmt.Errorf("LOOP_CONFIGURE %s: %w", dev, err)
	}
	return dev, nil
}
