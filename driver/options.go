package driver

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/pkg/unshare"
)

// Options are the cfs driver's settings. They come, lowest precedence
// first, from the [storage.options.cfs] table of storage.conf (found the
// way containers/storage finds it, CONTAINERS_STORAGE_CONF included) and
// from driver options ("cfs.KEY=VALUE" or "KEY=VALUE": podman's
// --storage-opt, STORAGE_OPTS, graphdriver.Options.DriverOptions).
type Options struct {
	// InlineThreshold is the largest file content kept inside a layer's
	// composefs image instead of the object store (key inline_threshold).
	InlineThreshold int64
	// Verity is the fs-verity mode for objects: none, auto or require
	// (key verity).
	Verity string
	// HostRepo is the host's ostree repository to share objects with
	// (key host_repo; "" for none).
	HostRepo string
	// HostLink is how host objects are shared: auto, hardlink, reflink,
	// copy or off (key host_link).
	HostLink string
	// MountOpts are extra overlay mount options (key mountopt).
	MountOpts []string
}

// ErrInvalidOption is wrapped by every error about a driver option.
var ErrInvalidOption = errors.New("cfs: invalid option")

const defaultHostRepo = "/sysroot/ostree/repo"

func defaultOptions() Options {
	o := Options{InlineThreshold: 64, Verity: "none", HostLink: "auto"}
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
	for k, v := range conf {
		if err := o.set(k, fmt.Sprint(v), "storage.conf [storage.options.cfs]"); err != nil {
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

// set applies one option; from says where it came from, for errors.
func (o *Options) set(key, val, from string) error {
	k := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(key)), "cfs.")
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
		if val != "none" && val != "auto" && val != "require" {
			return bad("want none, auto or require")
		}
		o.Verity = val
	case "host_repo":
		o.HostRepo = val
	case "host_link":
		switch val {
		case "auto", "hardlink", "reflink", "copy", "off":
		default:
			return bad("want auto, hardlink, reflink, copy or off")
		}
		o.HostLink = val
	case "mountopt":
		for _, m := range strings.Split(val, ",") {
			if m = strings.TrimSpace(m); m != "" {
				o.MountOpts = append(o.MountOpts, m)
			}
		}
	case "imagestore", "additionallayerstore", "size", "mount_program", "force_mask":
		if val != "" {
			return bad("not supported by the cfs driver")
		}
	case "skip_mount_home", "ignore_chown_errors", "sync":
		// Accepted for compatibility with storage.conf files written for
		// other drivers; they have no effect on cfs.
	default:
		return bad("unknown option (known: inline_threshold, verity, host_repo, host_link, mountopt)")
	}
	return nil
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
