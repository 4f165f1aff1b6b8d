package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultPath is the PATH a process gets when the image sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// SpecOptions describe the process to run.
type SpecOptions struct {
	// Rootfs is the mounted container root (absolute path).
	Rootfs string
	// Hostname of the container (its short ID, as podman does).
	Hostname string
	// Command, when set, replaces the image's Cmd (the entrypoint stays).
	Command []string
	// NoCgroups leaves cgroup settings out (runtime without a manager).
	NoCgroups bool
}

// SpecVersion is the OCI runtime spec version written: the newest that
// both Debian 12's crun 1.8.1 and runc accept (crun rejects 1.1+ as
// "unknown version specified").
const SpecVersion = "1.0.2-dev"

// defaultCaps is podman's default capability set.
func defaultCaps() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
	}
}

// Spec builds the OCI runtime spec of a container from its image
// config: process args (entrypoint + cmd), env, working directory and
// user; root at o.Rootfs, writable; /proc, /dev (tmpfs), /dev/pts,
// /dev/shm and /sys (read-only); pid, mount, ipc and uts namespaces
// (the host network is shared, with the host's /etc/resolv.conf and
// /etc/hosts bound read-only).
func Spec(cfg *imgspecv1.ImageConfig, o SpecOptions) (*specs.Spec, error) {
	args := append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...)
	if len(o.Command) > 0 {
		args = append(append([]string(nil), cfg.Entrypoint...), o.Command...)
	}
	if len(args) == 0 {
		return nil, errors.New("no command: the image sets no entrypoint or cmd, so give one after the image name")
	}
	user, err := resolveUser(o.Rootfs, cfg.User)
	if err != nil {
		return nil, err
	}
	env := append([]string(nil), cfg.Env...)
	if !hasEnv(env, "PATH") {
		env = append([]string{DefaultPath}, env...)
	}
	if !hasEnv(env, "HOSTNAME") && o.Hostname != "" {
		env = append(env, "HOSTNAME="+o.Hostname)
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	caps := defaultCaps()
	s := &specs.Spec{
		Version:  SpecVersion,
		Hostname: o.Hostname,
		Root:     &specs.Root{Path: o.Rootfs, Readonly: false},
		Process: &specs.Process{
			Args: args, Env: env, Cwd: cwd, User: user,
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: append(defaultMounts(), hostFiles()...),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
				"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux",
			},
			ReadonlyPaths: []string{"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if !o.NoCgroups {
		s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	}
	return s, nil
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
}

// hostFiles bind-mounts the host's /etc/resolv.conf and /etc/hosts
// read-only, as the container shares the host's network.
func hostFiles() []specs.Mount {
	var out []specs.Mount
	for _, p := range []string{"/etc/resolv.conf", "/etc/hosts"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			out = append(out, specs.Mount{Destination: p, Type: "bind", Source: p, Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
		}
	}
	return out
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// resolveUser turns the image's user ("", "name", "uid", "name:group",
// "uid:gid") into numeric IDs, reading /etc/passwd and /etc/group inside
// the container root.
func resolveUser(rootfs, spec string) (specs.User, error) {
	if spec == "" {
		return specs.User{}, nil
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	uid, gid, err := lookupID(rootfs, "etc/passwd", userPart, true)
	if err != nil {
		return specs.User{}, fmt.Errorf("image user %q: %w", spec, err)
	}
	if hasGroup {
		if gid, _, err = lookupID(rootfs, "etc/group", groupPart, false); err != nil {
			return specs.User{}, fmt.Errorf("image user %q: group: %w", spec, err)
		}
	}
	return specs.User{UID: uid, GID: gid}, nil
}

// lookupID resolves a name or number in a passwd-style file of the
// container root. For passwd it also returns the user's primary group.
func lookupID(rootfs, file, name string, passwd bool) (id, gid uint32, err error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		id = uint32(n)
		if !passwd {
			return id, 0, nil
		}
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return 0, 0, fmt.Errorf("open container root: %w", err)
	}
	defer root.Close()
	f, err := root.Open(file)
	if errors.Is(err, fs.ErrNotExist) && isNumeric(name) {
		return id, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("no /%s in the image to resolve %q: %w", file, name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 4 {
			continue
		}
		if fields[0] != name && fields[2] != name {
			continue
		}
		u, err1 := strconv.ParseUint(fields[2], 10, 32)
		g, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 != nil || (passwd && err2 != nil) {
			return 0, 0, fmt.Errorf("bad entry for %q in /%s", name, file)
		}
		return uint32(u), uint32(g), nil
	}
	if isNumeric(name) {
		return id, 0, nil
	}
	return 0, 0, fmt.Errorf("%q not found in the image's /%s", name, file)
}

func isNumeric(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
