package testutil

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ListTree describes every entry under root, one line each, sorted by
// path: type and mode, owner, size, link count, mtime, device number,
// symlink target, content digest and xattrs (security.selinux left out).
// Two mounted trees compare equal entry by entry when their listings do.
func ListTree(root string) ([]string, error) {
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line, err := describe(p, rel)
		if err != nil {
			return err
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return lines, err
}

func describe(p, rel string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "", fmt.Errorf("lstat %s: %w", p, err)
	}
	line := fmt.Sprintf("%s mode=%o owner=%d:%d mtime=%d", rel, st.Mode, st.Uid, st.Gid, st.Mtim.Sec)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		sum, err := fileDigest(p)
		if err != nil {
			return "", err
		}
		line += fmt.Sprintf(" size=%d nlink=%d sha256=%x", st.Size, st.Nlink, sum)
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		line += " -> " + target
	case unix.S_IFCHR, unix.S_IFBLK:
		line += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	xattrs, err := xattrText(p)
	if err != nil {
		return "", err
	}
	return line + xattrs, nil
}

func fileDigest(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return h.Sum(nil), nil
}

func xattrText(p string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "", fmt.Errorf("listxattr %s: %w", p, err)
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || name == "security.selinux" {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			return "", fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		out = append(out, fmt.Sprintf("%s=%q", name, val[:m]))
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "", nil
	}
	return " " + strings.Join(out, ","), nil
}
