package hostlink

import (
	"fmt"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// mountWholeFS mounts on mnt, read-write, the filesystem that holds both
// repo and session, and returns the paths of repo and session through
// that one mount. It must run in a private mount namespace: the mount,
// and making it writable, change nothing outside it. Only the new mount's
// own read-only flag is cleared; a filesystem whose superblock is
// read-only stays so (linking then fails with EROFS).
//
// The mount is a bind of an existing mount of the filesystem whose root
// holds both paths (on Fedora CoreOS, /sysroot); failing that, the
// filesystem's device mounted again (which shares the superblock).
func mountWholeFS(repo, session, mnt string) (string, string, error) {
	var rst, sst unix.Stat_t
	if err := unix.Stat(repo, &rst); err != nil {
		return "", "", fmt.Errorf("stat repository: %w", err)
	}
	if err := unix.Stat(session, &sst); err != nil {
		return "", "", fmt.Errorf("stat staging session: %w", err)
	}
	if rst.Dev != sst.Dev {
		return "", "", fmt.Errorf("repository and staging directory are on different filesystems")
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "", "", fmt.Errorf("read the mount table: %w", err)
	}
	maj, min := unix.Major(rst.Dev), unix.Minor(rst.Dev)
	fsRepo, err := fsPathOf(mounts, repo, maj, min)
	if err != nil {
		return "", "", err
	}
	fsSession, err := fsPathOf(mounts, session, maj, min)
	if err != nil {
		return "", "", err
	}
	base, err := mountRoot(mounts, maj, min, fsRepo, fsSession, mnt)
	if err != nil {
		return "", "", err
	}
	pRepo, pSession, err := underBase(mnt, base, fsRepo, fsSession)
	if err == nil {
		err = sameInode(pRepo, &rst)
	}
	if err == nil {
		err = sameInode(pSession, &sst)
	}
	if err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		return "", "", err
	}
	return pRepo, pSession, nil
}

// fsPathOf returns the path of p inside its filesystem, from the mount p
// is reached through, which must be of device maj:min.
func fsPathOf(mounts []*mountinfo.Info, p string, maj, min uint32) (string, error) {
	m, ok := mountOf(mounts, p)
	if !ok || !sameDevice(&m, maj, min) {
		return "", fmt.Errorf("no mount of device %d:%d found for %s in mountinfo", maj, min, p)
	}
	fp, _ := fsPath(&m, p)
	return fp, nil
}

// mountRoot mounts a tree of the filesystem maj:min holding every path
// of paths on mnt, writable, and returns its root's path in the
// filesystem.
func mountRoot(mounts []*mountinfo.Info, maj, min uint32, fsRepo, fsSession, mnt string) (string, error) {
	base := "/"
	if m, ok := rootMountFor(mounts, maj, min, fsRepo, fsSession); ok {
		if err := unix.Mount(m.Mountpoint, mnt, "", unix.MS_BIND, ""); err != nil {
			return "", fmt.Errorf("bind %s: %w", m.Mountpoint, err)
		}
		base = filepath.Clean(m.Root)
	} else {
		m, _ := mountOf(mounts, filepath.Dir(mnt))
		data := ""
		if m.FSType == "btrfs" {
			data = "subvolid=5" // mountinfo roots are relative to the top subvolume
		}
		if err := unix.Mount(m.Source, mnt, m.FSType, 0, data); err != nil {
			return "", fmt.Errorf("mount %s (%s): %w", m.Source, m.FSType, err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		return "", fmt.Errorf("statfs: %w", err)
	}
	if sfs.Flags&unix.ST_RDONLY != 0 {
		// A bind mount's read-only flag is its own: clear it on ours.
		if err := unix.Mount("", mnt, "", unix.MS_REMOUNT|unix.MS_BIND, ""); err != nil {
			unix.Unmount(mnt, unix.MNT_DETACH)
			return "", fmt.Errorf("make the private mount writable: %w", err)
		}
	}
	return base, nil
}

// underBase returns the fs paths fsRepo and fsSession as seen through a
// mount of the filesystem's directory base on mnt.
func underBase(mnt, base string, fsPaths ...string) (string, string, error) {
	var out []string
	for _, fp := range fsPaths {
		rel, err := filepath.Rel(base, fp)
		if err != nil || !filepath.IsLocal(rel) && rel != "." {
			return "", "", fmt.Errorf("%s is not under the mounted %s", fp, base)
		}
		out = append(out, filepath.Join(mnt, rel))
	}
	return out[0], out[1], nil
}

// sameInode checks that p is the inode st describes.
func sameInode(p string, st *unix.Stat_t) error {
	var got unix.Stat_t
	if err := unix.Stat(p, &got); err != nil {
		return fmt.Errorf("private mount: %s: %w", p, err)
	}
	if got.Dev != st.Dev || got.Ino != st.Ino {
		return fmt.Errorf("private mount: %s is not the expected directory (another mount covers it?)", p)
	}
	return nil
}
