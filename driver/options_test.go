package driver

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	storage "go.podman.io/storage"
	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/types"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

func writeConf(t *testing.T, body string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "storage.conf")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_STORAGE_CONF", p)
}

func TestOptionsFromStorageConfAndOverrides(t *testing.T) {
	writeConf(t, `[storage]
driver = "cfs"
[storage.options.cfs]
inline_threshold = 128
host_repo = "/srv/repo"
verity = "auto"
`)
	o, err := ParseOptions([]string{"cfs.verity=none", "host_link=copy", "mountopt=nodev,noatime"})
	if err != nil {
		t.Fatal(err)
	}
	if o.InlineThreshold != 128 || o.HostRepo != "/srv/repo" {
		t.Errorf("storage.conf values not applied: %+v", o)
	}
	if o.Verity != dedup.VerityNone || o.HostLink != dedup.LinkCopy {
		t.Errorf("driver options did not override storage.conf: %+v", o)
	}
	if o.MountFlags != unix.MS_NODEV|unix.MS_NOATIME || len(o.MountData) != 0 {
		t.Errorf("mountopt: flags %#x, data %q", o.MountFlags, o.MountData)
	}
}

func TestOptionsRejected(t *testing.T) {
	writeConf(t, "[storage]\ndriver = \"cfs\"\n")
	for opt, want := range map[string]string{
		"cfs.nonsense=1":         "unknown option",
		"inline_threshold=lots":  "byte count",
		"inline_threshold=99999": "byte count",
		"cfs.verity=sometimes":   "none, auto or require",
		"host_link=teleport":     "auto, hardlink",
		"size=10G":               "not supported",
		"no-equals-sign":         "KEY=VALUE",
	} {
		_, err := ParseOptions([]string{opt})
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrInvalidOption mentioning %q", opt, err, want)
		}
	}
	writeConf(t, "[storage.options.cfs]\nverity = \"maybe\"\n")
	if _, err := ParseOptions(nil); err == nil || !strings.Contains(err.Error(), "storage.conf") {
		t.Errorf("bad storage.conf value: err = %v, want it to name storage.conf", err)
	}
}

// fedoraStorageConf is /etc/containers/storage.conf as Fedora's and
// RHEL's containers-common ship it (comments dropped), with only the
// driver changed to cfs: the overlay table, the empty additional image
// stores, pull options, a commented-out imagestore.
const fedoraStorageConf = `[storage]
driver = "cfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
#imagestore = ""

[storage.options]
additionalimagestores = [
]
pull_options = {enable_partial_images = "true", use_hard_links = "false", ostree_repos=""}
#root-auto-userns-user = "storage"

[storage.options.overlay]
#ignore_chown_errors = "false"
#inodes = ""
#mount_program = "/usr/bin/fuse-overlayfs"
mountopt = "nodev,metacopy=on"
#skip_mount_home = "false"
#use_composefs = "false"
#size = ""
#force_mask = ""

[storage.options.thinpool]
#autoextend_percent = "20"

[storage.options.zfs]
#mountopt = "nodev"
`

// TestFedoraStorageConf reads a Fedora-shaped storage.conf with
// c/storage's own loader (what podman does) and hands the driver options
// it produces to the driver, as c/storage would: none is refused, and
// overlay's mountopt does not become cfs's.
func TestFedoraStorageConf(t *testing.T) {
	for name, extra := range map[string]string{
		"stock": "",
		// What admins uncomment, in the overlay table and in the
		// generic one (whose keys arrive unprefixed).
		"overlay table": "[storage.options.overlay]\nignore_chown_errors = \"true\"\nskip_mount_home = \"true\"\nuse_composefs = \"true\"\nsize = \"10G\"\ninodes = \"1000\"\nforce_mask = \"shared\"\nmount_program = \"/usr/bin/fuse-overlayfs\"\nsync = \"filesystem\"\n",
		"generic":       "[storage.options]\nskip_mount_home = \"true\"\nignore_chown_errors = \"false\"\nmountopt = \"nodev,nosuid\"\n",
		"btrfs and vfs": "[storage.options.btrfs]\nmin_space = \"1G\"\nsize = \"2G\"\n[storage.options.vfs]\nignore_chown_errors = \"true\"\nsync = \"none\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			conf := fedoraStorageConf
			if extra != "" {
				// TOML allows a table once: replace the stock one.
				header := extra[:strings.Index(extra, "\n")+1]
				if i := strings.Index(conf, header); i >= 0 {
					end := strings.Index(conf[i+len(header):], "\n[")
					conf = conf[:i] + conf[i+len(header)+end+1:]
				}
				conf += "\n" + extra
			}
			writeConf(t, conf)
			so, err := types.LoadStoreOptions(types.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if so.GraphDriverName != Name || len(so.GraphDriverOptions) == 0 {
				t.Fatalf("c/storage read driver %q, options %q", so.GraphDriverName, so.GraphDriverOptions)
			}
			o, err := ParseOptions(so.GraphDriverOptions)
			if err != nil {
				t.Fatalf("driver options %q: %v", so.GraphDriverOptions, err)
			}
			want := defaultOptions()
			if name == "generic" {
				want.MountFlags = unix.MS_NODEV | unix.MS_NOSUID
			}
			if !reflect.DeepEqual(o, want) {
				t.Errorf("driver options %q gave\n%+v, want\n%+v", so.GraphDriverOptions, o, want)
			}
		})
	}
}

// TestFedoraStorageConfInit goes the whole way: c/storage opens a store
// from a Fedora-shaped storage.conf naming cfs, which initialises the
// driver with the options c/storage made of the file.
func TestFedoraStorageConfInit(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	writeConf(t, strings.NewReplacer(
		"/run/containers/storage", filepath.Join(dir, "run"),
		"/var/lib/containers/storage", filepath.Join(dir, "root"),
	).Replace(fedoraStorageConf))
	so, err := types.LoadStoreOptions(types.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(so.GraphDriverOptions, "overlay.mountopt=nodev,metacopy=on") {
		t.Fatalf("c/storage made %q of the file: the test no longer covers overlay's table", so.GraphDriverOptions)
	}
	store, err := storage.GetStore(so)
	if err != nil {
		t.Fatalf("open a store from Fedora's storage.conf: %v", err)
	}
	defer store.Shutdown(true)
	if store.GraphDriverName() != Name {
		t.Fatalf("driver %q", store.GraphDriverName())
	}
	layer, err := store.CreateLayer("", "", nil, "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Mount(layer.ID, ""); err != nil {
		t.Fatalf("mount: %v", err)
	}
	if _, err := store.Unmount(layer.ID, true); err != nil {
		t.Fatal(err)
	}
}

// TestForeignDriverOptionsIgnored: c/storage passes every driver's
// options to the chosen one; keys prefixed with another driver's name
// are skipped whatever they say, as overlay skips cfs's.
func TestForeignDriverOptionsIgnored(t *testing.T) {
	writeConf(t, "[storage]\ndriver = \"cfs\"\n")
	o, err := ParseOptions([]string{
		"overlay.mountopt=nodev,metacopy=on", "overlay2.size=10G", "overlay.mount_program=/usr/bin/fuse-overlayfs",
		"overlay.imagestore=/nonexistent", "overlay.nonsense=1", "vfs.ignore_chown_errors=maybe",
		"btrfs.min_space=1G", "zfs.fsname=tank", "aufs.x=y", "devmapper.basesize=20G", "OVERLAY.mountopt=ro",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o, defaultOptions()) {
		t.Errorf("another driver's options changed cfs's: %+v", o)
	}
}

// TestPrefixedAndUnprefixedKeys: the table, unprefixed keys and
// cfs.-prefixed keys set the same options (README recommends the table
// and unprefixed keys: libpod's GetMountOptions refuses "cfs." ones).
func TestPrefixedAndUnprefixedKeys(t *testing.T) {
	writeConf(t, "[storage]\ndriver = \"cfs\"\n")
	opts := []string{"inline_threshold=100", "verity=auto", "host_repo=/srv/repo", "host_link=copy", "mountopt=nodev"}
	plain, err := ParseOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	var prefixed []string
	for _, o := range opts {
		prefixed = append(prefixed, "cfs."+o)
	}
	withPrefix, err := ParseOptions(prefixed)
	if err != nil {
		t.Fatal(err)
	}
	writeConf(t, "[storage]\ndriver = \"cfs\"\n[storage.options.cfs]\ninline_threshold = 100\nverity = \"auto\"\nhost_repo = \"/srv/repo\"\nhost_link = \"copy\"\nmountopt = \"nodev\"\n")
	fromTable, err := ParseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Options{InlineThreshold: 100, Verity: dedup.VerityAuto, HostRepo: "/srv/repo", HostLink: dedup.LinkCopy,
		MountFlags: unix.MS_NODEV}
	for name, got := range map[string]Options{"unprefixed": plain, "cfs.": withPrefix, "table": fromTable} {
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	// A later value replaces an earlier one, as in overlay.
	o, err := ParseOptions([]string{"mountopt=nodev", "cfs.mountopt=noexec", "host_link=off", "cfs.host_link=reflink"})
	if err != nil {
		t.Fatal(err)
	}
	if o.MountFlags != unix.MS_NOEXEC || o.HostLink != dedup.LinkReflink {
		t.Errorf("later values did not win: %+v", o)
	}
}

// TestGenericOptions: the options c/storage gives every driver are
// honoured, ignored (with valid values) or refused by name.
func TestGenericOptions(t *testing.T) {
	writeConf(t, "[storage]\ndriver = \"cfs\"\n")
	for _, opt := range []string{
		"ignore_chown_errors=true", "skip_mount_home=false", "use_composefs=true", "sync=none", "sync=filesystem",
		"override_kernel_check=true", "size=", "inodes=", "mount_program=", "force_mask=", "imagestore=",
		"additionallayerstore=", "cfs.use_composefs=1",
	} {
		o, err := ParseOptions([]string{opt})
		if err != nil {
			t.Errorf("%s: %v", opt, err)
		} else if !reflect.DeepEqual(o, defaultOptions()) {
			t.Errorf("%s changed the options: %+v", opt, o)
		}
	}
	for opt, want := range map[string]string{
		"imagestore=/nonexistent/images":        "no such file or directory",
		"additionalimagestore=relative/images":  "not an absolute path",
		"imagestore=/etc/hostname":              "not a directory",
		"additionallayerstore=/srv/layers":      "additional layer stores",
		"size=10G":                              "quotas",
		"cfs.inodes=100":                        "quotas",
		"mount_program=/usr/bin/fuse-overlayfs": "mount program",
		"force_mask=755":                        "force_mask",
		"ignore_chown_errors=perhaps":           "true or false",
		"sync=always":                           "none or filesystem",
		"cfs.bogus=1":                           "unknown option",
		"bogus=1":                               "unknown option",
	} {
		_, err := ParseOptions([]string{opt})
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrInvalidOption mentioning %q", opt, err, want)
		}
	}
}

// TestImageStoreOptions: imagestore and additionalimagestore add
// read-only stores, each once, in order; AdditionalImageStores lists
// them.
func TestImageStoreOptions(t *testing.T) {
	writeConf(t, "[storage]\ndriver = \"cfs\"\n")
	a, b := t.TempDir(), t.TempDir()
	o, err := ParseOptions([]string{"imagestore=" + a + "," + b, "cfs.additionalimagestore=" + a, ".imagestore=" + b + "/"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.ImageStores, []string{a, b}) {
		t.Errorf("ImageStores = %q, want %q", o.ImageStores, []string{a, b})
	}
	drv, err := Init(t.TempDir(), graphdriver.Options{DriverOptions: []string{"imagestore=" + a}})
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Cleanup()
	if got := drv.AdditionalImageStores(); !reflect.DeepEqual(got, []string{a}) {
		t.Errorf("AdditionalImageStores() = %q", got)
	}
}

// TestMountOpt: mountopt's flags become mount flags, the rest overlay's
// data; operations on existing mounts and the driver's own overlay
// options are refused.
func TestMountOpt(t *testing.T) {
	writeConf(t, "[storage]\ndriver = \"cfs\"\n")
	for val, want := range map[string]struct {
		flags uintptr
		data  []string
	}{
		"nodev,metacopy=on":            {unix.MS_NODEV, []string{"metacopy=on"}},
		"nodev, nosuid ,noexec,ro":     {unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_RDONLY, nil},
		"ro,rw":                        {0, nil},
		"noatime,nodiratime,volatile":  {unix.MS_NOATIME | unix.MS_NODIRATIME, []string{"volatile"}},
		"defaults,relatime,xino=off,,": {unix.MS_RELATIME, []string{"xino=off"}},
		"nodev,dev,nosuid,userxattr":   {unix.MS_NOSUID, []string{"userxattr"}},
		"":                             {0, nil},
	} {
		o, err := ParseOptions([]string{"mountopt=" + val})
		if err != nil {
			t.Errorf("mountopt=%s: %v", val, err)
			continue
		}
		if o.MountFlags != want.flags || !slices.Equal(o.MountData, want.data) {
			t.Errorf("mountopt=%s: flags %#x data %q, want %#x %q", val, o.MountFlags, o.MountData, want.flags, want.data)
		}
	}
	for _, val := range []string{"bind", "nodev,rbind", "remount", "private", "rshared", "slave", "unbindable", "sync", "dirsync", "mand",
		"lowerdir=/x", "upperdir=/x", "workdir=/x", "lowerdir+=/x", "datadir+=/x"} {
		_, err := ParseOptions([]string{"mountopt=" + val})
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "mountopt") {
			t.Errorf("mountopt=%s: err = %v, want it refused", val, err)
		}
	}
}

// TestMountFlagsAndData: a mount's own options replace the driver's
// mountopt (libpod's --privileged containers drop nodev that way), as in
// overlay; without them the driver's apply.
func TestMountFlagsAndData(t *testing.T) {
	writeConf(t, "[storage]\ndriver = \"cfs\"\n")
	o, err := ParseOptions([]string{"mountopt=nodev,nosuid,volatile"})
	if err != nil {
		t.Fatal(err)
	}
	flags, data, err := o.mountFlagsAndData(nil)
	if err != nil || flags != unix.MS_NODEV|unix.MS_NOSUID || !slices.Equal(data, []string{"volatile"}) {
		t.Errorf("driver's: %#x %q %v", flags, data, err)
	}
	flags, data, err = o.mountFlagsAndData([]string{"noexec", "xino=off"})
	if err != nil || flags != unix.MS_NOEXEC || !slices.Equal(data, []string{"xino=off"}) {
		t.Errorf("the mount's own: %#x %q %v", flags, data, err)
	}
	if _, _, err := o.mountFlagsAndData([]string{"bind"}); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("bind: err = %v", err)
	}
}
