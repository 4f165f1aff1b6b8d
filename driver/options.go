package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/pkg/mount"
	"go.podman.io/storage/pkg/unshare"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
)

// Options are the cfs driver's settings. They come, lowest precedence
// first, from the [storage.options.cfs] table of storage.conf (found the
// way containers/storage finds it, CONTAINERS_STORAGE_CONF included) and
// from driver options ("KEY=VALUE" or "cfs.KEY=VALUE": podman's
// --storage-opt, STORAGE_OPTS, graphdriver.Options.DriverOptions).
//
// containers/storage hands every driver the options of all drivers: a
// storage.conf's [storage.options.overlay] table arrives as
// "overlay.mountopt=…". As c/storage's own drivers do, cfs skips a key
// whose prefix names another driver ("overlay.", "vfs.", …) and takes
// unprefixed and "cfs."-prefixed keys as its own.
type Options struct {
	// InlineThreshold is the largest file content kept inside a layer's
	// composefs image instead of the object store (key inline_threshold).
	InlineThreshold int64
	// Verity is the fs-verity mode for objects and flattened images
	// (key verity: none, auto or require).
	Verity dedup.VerityMode
	// HostRepo is the host's ostree repository to share objects with
	// (key host_repo; "" for none).
	HostRepo string
	// HostLink is how host objects are shared (key host_link: auto,
	// hardlink, reflink, copy, or off for dedup.LinkNone: not at all).
	HostLink dedup.LinkMode
	// MountFlags are the mount flags of key mountopt (MS_NODEV for
	// "nodev", MS_RDONLY for "ro", …), for every overlay mount.
	MountFlags uintptr
	// MountData are the other options of key mountopt, overlay's own
	// ("metacopy=on", "volatile", …), for the mount's data string.
	MountData []string
	// ImageStores are additional read-only image stores (keys imagestore
	// and additionalimagestore, a comma-separated list of absolute
	// directories; storage.conf's additionalimagestores): the graph
	// roots of other stores whose cfs layers and objects this store
	// uses without writing to them.
	ImageStores []string
}

// hostLinkOff is the host_link value that turns host sharing off.
const hostLinkOff = "off"

// hostLinkName is the host_link word for m.
func hostLinkName(m dedup.LinkMode) string {
	if m == dedup.LinkNone {
		return hostLinkOff
	}
	return m.String()
}

// sharesHost reports whether the options share the host's objects.
func (o Options) sharesHost() bool { return o.HostRepo != "" && o.HostLink != dedup.LinkNone }

// ErrInvalidOption is wrapped by every error about a driver option.
var ErrInvalidOption = errors.New("cfs: invalid option")

const defaultHostRepo = "/sysroot/ostree/repo"

func defaultOptions() Options {
	o := Options{InlineThreshold: 64, Verity: dedup.VerityNone, HostLink: dedup.LinkAuto}
	if st, err := os.Stat(defaultHostRepo); err == nil && st.IsDir() {
		o.HostRepo = defaultHostRepo
	}
	return o
}

// ParseOptions returns the options set by storage.conf's
// [storage.options.cfs] table overridden by opts.
func ParseOptions(opts []string) (Options, error) {
	o := defaultOptions()
	conf, err := configTable()
	if err != nil {
		return o, err
	}
	// A TOML table has no order; sorted keys make a key given twice
	// (verity and cfs.verity) resolve the same way every time.
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := o.set(k, fmt.Sprint(conf[k]), "storage.conf [storage.options.cfs]"); err != nil {
			return o, err
		}
	}
	for _, opt := range opts {
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			return o, fmt.Errorf("%w %q: want KEY=VALUE", ErrInvalidOption, opt)
		}
		if err := o.set(k, v, "driver option"); err != nil {
			return o, err
		}
	}
	return o, nil
}

// knownKeys names the keys cfs itself uses, for the unknown-key error.
const knownKeys = "inline_threshold, verity, host_repo, host_link, mountopt, imagestore"

// set applies one option; from says where it came from, for errors. A
// later value of a key replaces an earlier one, mountopt included (as
// overlay's mountopt does).
func (o *Options) set(key, val, from string) error {
	k := strings.ToLower(strings.TrimSpace(key))
	val = strings.TrimSpace(val)
	if drv, name, ok := strings.Cut(k, "."); ok {
		if drv != Name && drv != "" { // ".imagestore": c/storage's generic form
			// Another driver's option (overlay.mountopt from Fedora's
			// storage.conf, say): not ours, as overlay's parseOptions
			// skips every prefix but its own.
			return nil
		}
		k = name
	}
	bad := func(why string) error {
		return fmt.Errorf("%w %s=%s (from %s): %s", ErrInvalidOption, key, val, from, why)
	}
	switch k {
	case "inline_threshold":
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 || n > 4096 {
			return bad("want a byte count from 0 to 4096")
		}
		o.InlineThreshold = n
	case "verity":
		m, err := dedup.ParseVerityMode(val)
		if err != nil {
			return bad("want none, auto or require")
		}
		o.Verity = m
	case "host_repo":
		o.HostRepo = val
	case "host_link":
		m, err := dedup.ParseLinkMode(val)
		switch {
		case val == hostLinkOff:
			m = dedup.LinkNone
		case err != nil:
			return bad("want auto, hardlink, reflink, copy or off")
		}
		o.HostLink = m
	case "mountopt":
		flags, data, err := parseMountOpt(val)
		if err != nil {
			return bad(err.Error())
		}
		o.MountFlags, o.MountData = flags, data
	case "imagestore", "additionalimagestore":
		stores, err := parseImageStores(val)
		if err != nil {
			return bad(err.Error())
		}
		// Every occurrence adds stores, as overlay's do.
		for _, s := range stores {
			if !slices.Contains(o.ImageStores, s) {
				o.ImageStores = append(o.ImageStores, s)
			}
		}
	default:
		return genericOption(k, val, bad)
	}
	return nil
}

// genericOption checks one of the options containers/storage passes to
// every driver (from storage.conf's [storage.options] table, unprefixed,
// or from --storage-opt): each is refused when set to what cfs cannot
// do, and otherwise has no effect on cfs, for the reason given.
func genericOption(k, val string, bad func(string) error) error {
	isBool := func() error {
		if _, err := strconv.ParseBool(val); err != nil {
			return bad("want true or false")
		}
		return nil
	}
	switch k {
	case "additionallayerstore":
		if val != "" {
			return bad("additional layer stores are not supported by the cfs driver")
		}
	case "size", "inodes":
		if val != "" {
			return bad("per-container size and inode quotas are not supported by the cfs driver")
		}
	case "mount_program":
		if val != "" {
			return bad("the cfs driver mounts with the kernel's EROFS and overlayfs; a mount program (fuse-overlayfs) is not supported")
		}
	case "force_mask":
		if val != "" {
			return bad("force_mask is not supported by the cfs driver")
		}
	case "skip_mount_home":
		// cfs does not bind-mount its home (a store on a mount of its
		// own could not hard-link host objects: EXDEV), so there is
		// nothing to skip.
		return isBool()
	case "ignore_chown_errors":
		// cfs never chowns a file to store a layer (owners are image
		// metadata), so there are no chown errors to ignore.
		return isBool()
	case "use_composefs":
		// cfs always mounts composefs images.
		return isBool()
	case "sync":
		// The object store and the images are synced as they are
		// committed whatever the mode.
		if val != "none" && val != "filesystem" {
			return bad("want none or filesystem")
		}
	case "override_kernel_check":
		// Obsolete; overlay accepts and ignores it too.
	default:
		return bad("unknown option (known: " + knownKeys + ")")
	}
	return nil
}

// parseImageStores reads a comma-separated list of image store
// directories: each must be absolute and an existing directory.
func parseImageStores(val string) ([]string, error) {
	var out []string
	for s := range strings.SplitSeq(val, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		s = filepath.Clean(s)
		if !filepath.IsAbs(s) {
			return nil, fmt.Errorf("image store %q is not an absolute path", s)
		}
		st, err := os.Stat(s)
		if err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("image store %s is not a directory", s)
		}
		out = append(out, s)
	}
	return out, nil
}

// refusedMountFlags are the flags of mount options that are operations
// on existing mounts (bind, remount, propagation), not options of the
// new overlay mount.
const refusedMountFlags = unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT | unix.MS_MOVE |
	unix.MS_PRIVATE | unix.MS_SHARED | unix.MS_SLAVE | unix.MS_UNBINDABLE

// driverMountData are overlay options that the driver sets itself on
// every mount: a user's value would point overlay elsewhere.
var driverMountData = []string{"lowerdir", "lowerdir+", "upperdir", "workdir", "datadir+"}

// parseMountOpt splits a mountopt value ("nodev,metacopy=on") into mount
// flags, read by c/storage's pkg/mount.ParseOptions as overlay reads
// them (in order: "ro,rw" is read-write), and the other options,
// overlay's data.
func parseMountOpt(val string) (uintptr, []string, error) {
	var flagOpts, data []string
	for _, m := range strings.Split(val, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if m == "defaults" {
			continue // no flag, and no overlay option either
		}
		f, d := mount.ParseOptions(m)
		if uintptr(f)&refusedMountFlags != 0 {
			return 0, nil, fmt.Errorf("%q is not an option of a new mount", m)
		}
		if d == "" {
			// A flag set or cleared; the mount must be able to set it
			// (sync, dirsync and mand are no mount attributes).
			if _, err := attrsOf(uintptr(f)); err != nil {
				return 0, nil, fmt.Errorf("%q is not supported for overlay mounts by the cfs driver", m)
			}
			flagOpts = append(flagOpts, m)
			continue
		}
		name, _, _ := strings.Cut(d, "=")
		if slices.Contains(driverMountData, name) {
			return 0, nil, fmt.Errorf("%q is set by the cfs driver itself", name)
		}
		data = append(data, d)
	}
	flags, _ := mount.ParseOptions(strings.Join(flagOpts, ","))
	return uintptr(flags), data, nil
}

// mountFlagsAndData returns the mount flags and overlay data options of
// one mount: the mount's own options (c/storage's MountOpts.Options, a
// container's: libpod gives a --privileged container the driver's
// mountopt without nodev, nosuid and noexec) when it has any, else the
// driver's mountopt, as overlay's get chooses between them.
func (o Options) mountFlagsAndData(perMount []string) (uintptr, []string, error) {
	if len(perMount) == 0 {
		return o.MountFlags, o.MountData, nil
	}
	flags, data, err := parseMountOpt(strings.Join(perMount, ","))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: mount option: %w", ErrInvalidOption, err)
	}
	return flags, data, nil
}

// configTable reads [storage.options.cfs] from storage.conf exactly as
// containers/storage locates and reads the file.
func configTable() (map[string]any, error) {
	var conf struct {
		Storage struct {
			Options struct {
				Cfs map[string]any `toml:"cfs"`
			} `toml:"options"`
		} `toml:"storage"`
	}
	err := configfile.ParseTOML(&conf, &configfile.File{
		Name:            "storage",
		Extension:       "conf",
		EnvironmentName: "CONTAINERS_STORAGE_CONF",
		UserId:          unshare.GetRootlessUID(),
	})
	if err != nil {
		return nil, fmt.Errorf("cfs: read storage.conf: %w", err)
	}
	return conf.Storage.Options.Cfs, nil
}
