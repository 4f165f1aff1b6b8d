package hostlink

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo (see proc_pid_mountinfo(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)     (7)   (8) (9)    (10)         (11)
type mountEntry struct {
	id, parent   int    // (1) mount ID, (2) parent ID
	major, minor uint32 // (3) st_dev of files on the filesystem
	root         string // (4) the directory of the filesystem mounted here
	mountPoint   string // (5) where, relative to the process's root
	options      string // (6) per-mount options (ro/rw, …)
	fsType       string // (9)
	source       string // (10) device or "none"
	superOptions string // (11) per-superblock options
}

// readOnly reports whether this mount (not necessarily its filesystem)
// is read-only.
func (m *mountEntry) readOnly() bool {
	for _, o := range strings.Split(m.options, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// parseMountInfo parses the text of /proc/<pid>/mountinfo, undoing the
// octal escapes of its path fields.
func parseMountInfo(data []byte) ([]mountEntry, error) {
	var out []mountEntry
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		e, err := parseMountLine(line)
		if err != nil {
			return nil, fmt.Errorf("hostlink: mountinfo line %d: %w", i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseMountLine(line string) (mountEntry, error) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return mountEntry{}, fmt.Errorf("malformed: %q", line)
	}
	var e mountEntry
	var err1, err2 error
	e.id, err1 = strconv.Atoi(f[0])
	e.parent, err2 = strconv.Atoi(f[1])
	majMin := strings.SplitN(f[2], ":", 2)
	if err1 != nil || err2 != nil || len(majMin) != 2 {
		return mountEntry{}, fmt.Errorf("malformed ids: %q", line)
	}
	maj, err1 := strconv.ParseUint(majMin[0], 10, 32)
	min, err2 := strconv.ParseUint(majMin[1], 10, 32)
	if err1 != nil || err2 != nil {
		return mountEntry{}, fmt.Errorf("malformed device %q", f[2])
	}
	e.major, e.minor = uint32(maj), uint32(min)
	e.root, e.mountPoint, e.options = unescapeOctal(f[3]), unescapeOctal(f[4]), f[5]
	e.fsType, e.source = f[sep+1], unescapeOctal(f[sep+2])
	if len(f) > sep+3 {
		e.superOptions = f[sep+3]
	}
	return e, nil
}

// unescapeOctal undoes mountinfo's \ooo escapes (\040 for a space, …).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	for _, c := range s {
		if c < '0' || c > '7' {
			return false
		}
	}
	return len(s) == 3 && s[0] <= '3'
}

// within reports whether p is dir or below it (both clean and absolute).
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// mountOf returns the mount through which the clean absolute path p is
// reached: the entry with the longest mount point containing p, the
// last listed one among equals (a later mount covers an earlier one on
// the same point).
func mountOf(mounts []mountEntry, p string) (mountEntry, bool) {
	best, found := -1, false
	for i := range mounts {
		mp := mounts[i].mountPoint
		if !within(p, mp) {
			continue
		}
		if !found || len(mp) >= len(mounts[best].mountPoint) {
			best, found = i, true
		}
	}
	if !found {
		return mountEntry{}, false
	}
	return mounts[best], true
}

// fsPath returns the path of p inside m's filesystem (from the
// filesystem's root): m's root followed by p below m's mount point.
func (m *mountEntry) fsPath(p string) (string, bool) {
	if !within(p, m.mountPoint) {
		return "", false
	}
	rel := strings.TrimPrefix(p, m.mountPoint)
	return filepath.Join("/", m.root, rel), true
}

// rootMountFor returns a mount of the filesystem dev (major, minor)
// whose root contains every fs path in paths: the one with the shortest
// root, preferring a read-write one. It reports false when no mount of
// that filesystem contains them all.
func rootMountFor(mounts []mountEntry, major, minor uint32, paths ...string) (mountEntry, bool) {
	best, found := -1, false
	for i := range mounts {
		m := &mounts[i]
		if m.major != major || m.minor != minor {
			continue
		}
		ok := true
		for _, p := range paths {
			ok = ok && within(p, filepath.Clean(m.root))
		}
		if !ok {
			continue
		}
		if !found || len(m.root) < len(mounts[best].root) ||
			(len(m.root) == len(mounts[best].root) && mounts[best].readOnly() && !m.readOnly()) {
			best, found = i, true
		}
	}
	if !found {
		return mountEntry{}, false
	}
	return mounts[best], true
}
