// Package runtime runs a container's process with an OCI runtime (crun
// or runc from PATH): it writes a minimal OCI runtime spec from the
// image config, detects what the runtime needs on this machine, runs
// it in the foreground and cleans up its state.
package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Runtime is an OCI runtime found on PATH and how to call it here.
type Runtime struct {
	// Name is "crun" or "runc"; Path its executable.
	Name string
	Path string
	// GlobalArgs precede the runtime's subcommand (for example
	// --cgroup-manager=disabled for crun on a hybrid cgroup host).
	GlobalArgs []string
	// NoCgroups means the runtime manages no cgroups: the spec must not
	// ask for a cgroups path or resources.
	NoCgroups bool
	// DetachUnified runs the runtime in a private mount namespace
	// without the hybrid layout's cgroup2 mount (crun on hybrid hosts).
	DetachUnified bool
}

// CgroupLayout is how cgroups are mounted on this host.
type CgroupLayout int

// Cgroup layouts.
const (
	CgroupUnknown CgroupLayout = iota
	CgroupV1                   // legacy: v1 controllers only
	CgroupHybrid               // v1 controllers plus a cgroup2 mount (systemd's "unified" dir)
	CgroupV2                   // unified: cgroup2 at /sys/fs/cgroup
)

// String names the layout as the runtime's messages do.
func (l CgroupLayout) String() string {
	switch l {
	case CgroupV1:
		return "v1"
	case CgroupHybrid:
		return "hybrid"
	case CgroupV2:
		return "v2"
	}
	return "unknown"
}

// ParseCgroupLayout reads a mountinfo table (/proc/self/mountinfo).
func ParseCgroupLayout(r io.Reader) (CgroupLayout, error) {
	mounts, err := mountinfo.GetMountsFromReader(r, mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return CgroupUnknown, fmt.Errorf("read mountinfo: %w", err)
	}
	var v1, v2, v2AtRoot bool
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup":
			v1 = true
		case "cgroup2":
			v2 = true
			v2AtRoot = v2AtRoot || m.Mountpoint == "/sys/fs/cgroup"
		}
	}
	switch {
	case v2AtRoot && !v1:
		return CgroupV2, nil
	case v1 && v2:
		return CgroupHybrid, nil
	case v1:
		return CgroupV1, nil
	case v2:
		return CgroupV2, nil
	}
	return CgroupUnknown, nil
}

// Detect finds the runtime named name ("crun", "runc", or "" for the
// first of crun and runc on PATH, as podman prefers crun) and works out
// its arguments for this host's cgroup layout.
func Detect(ctx context.Context, name string) (*Runtime, error) {
	names := []string{name}
	switch name {
	case "":
		names = []string{"crun", "runc"}
	case "crun", "runc":
	default:
		return nil, fmt.Errorf("unsupported runtime %q: use --runtime crun or --runtime runc", name)
	}
	var tried []string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			tried = append(tried, n)
			continue
		}
		return probe(ctx, n, p)
	}
	return nil, fmt.Errorf("no OCI runtime found on PATH (looked for %s): install crun or runc (apt-get install crun runc)", strings.Join(tried, ", "))
}

func probe(ctx context.Context, name, path string) (*Runtime, error) {
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w: %s", path, err, bytes.TrimSpace(out))
	}
	r := &Runtime{Name: name, Path: path}
	if name != "crun" {
		return r, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("detect cgroup layout: %w", err)
	}
	defer f.Close()
	layout, err := ParseCgroupLayout(f)
	if err != nil {
		return nil, fmt.Errorf("detect cgroup layout: %w", err)
	}
	// crun 1.8 refuses hybrid hierarchies ("cgroups in hybrid mode not
	// supported, drop all controllers from cgroupv2"), even with
	// --cgroup-manager=disabled; in a mount namespace where the cgroup2
	// mount is detached it sees a v1 host and manages v1 cgroups.
	r.DetachUnified = layout == CgroupHybrid
	return r, nil
}
