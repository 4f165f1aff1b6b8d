package hostlink

import (
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// The mount table is read with github.com/moby/sys/mountinfo: one Info
// per line of /proc/self/mountinfo, its path fields unescaped (\040 for
// a space, …).

// readOnly reports whether the mount m (not necessarily its filesystem)
// is read-only.
func readOnly(m *mountinfo.Info) bool {
	for _, o := range strings.Split(m.Options, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// within reports whether p is dir or below it (both clean and absolute).
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// mountOf returns the mount through which the clean absolute path p is
// reached: the entry with the longest mount point containing p, the
// last listed one among equals (a later mount covers an earlier one on
// the same point).
func mountOf(mounts []*mountinfo.Info, p string) (mountinfo.Info, bool) {
	best, found := -1, false
	for i := range mounts {
		mp := mounts[i].Mountpoint
		if !within(p, mp) {
			continue
		}
		if !found || len(mp) >= len(mounts[best].Mountpoint) {
			best, found = i, true
		}
	}
	if !found {
		return mountinfo.Info{}, false
	}
	return *mounts[best], true
}

// fsPath returns the path of p inside m's filesystem (from the
// filesystem's root): m's root followed by p below m's mount point.
func fsPath(m *mountinfo.Info, p string) (string, bool) {
	if !within(p, m.Mountpoint) {
		return "", false
	}
	rel := strings.TrimPrefix(p, m.Mountpoint)
	return filepath.Join("/", m.Root, rel), true
}

// rootMountFor returns a mount of the filesystem dev (major, minor)
// whose root contains every fs path in paths: the one with the shortest
// root, preferring a read-write one. It reports false when no mount of
// that filesystem contains them all.
func rootMountFor(mounts []*mountinfo.Info, major, minor uint32, paths ...string) (mountinfo.Info, bool) {
	best, found := -1, false
	for i := range mounts {
		m := mounts[i]
		if !sameDevice(m, major, minor) {
			continue
		}
		ok := true
		for _, p := range paths {
			ok = ok && within(p, filepath.Clean(m.Root))
		}
		if !ok {
			continue
		}
		if !found || len(m.Root) < len(mounts[best].Root) ||
			(len(m.Root) == len(mounts[best].Root) && readOnly(mounts[best]) && !readOnly(m)) {
			best, found = i, true
		}
	}
	if !found {
		return mountinfo.Info{}, false
	}
	return *mounts[best], true
}

// sameDevice reports whether m is a mount of the filesystem dev (major,
// minor).
func sameDevice(m *mountinfo.Info, major, minor uint32) bool {
	return m.Major == int(major) && m.Minor == int(minor)
}
