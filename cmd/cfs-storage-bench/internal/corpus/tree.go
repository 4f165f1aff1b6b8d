package corpus

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// node is one entry of a root filesystem snapshot: what a layer tar
// records about it, and a digest of a regular file's content.
type node struct {
	typ      byte // tar type flag (TypeReg, TypeDir, TypeSymlink, TypeChar, TypeBlock, TypeFifo)
	mode     int64
	uid, gid int
	size     int64
	digest   [sha256.Size]byte
	link     string // symlink target
	major    int64
	minor    int64
	capXattr string // security.capability, the one xattr Debian packages set
	inode    uint64 // for hard-link groups (regular files with nlink > 1)
	nlink    uint64
	mtime    time.Time
}

// same reports whether two snapshots of a path need no layer entry.
func (n *node) same(o *node) bool {
	return n.typ == o.typ && n.mode == o.mode && n.uid == o.uid && n.gid == o.gid &&
		n.size == o.size && n.digest == o.digest && n.link == o.link &&
		n.major == o.major && n.minor == o.minor && n.capXattr == o.capXattr
}

// snapshot is a root filesystem's entries by slash path relative to the
// root ("usr/bin/true"); the root itself is not an entry.
type snapshot map[string]*node

// scan records every entry under root, hashing regular files.
func scan(root string) (snapshot, error) {
	snap := snapshot{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		n, err := statNode(p)
		if err != nil {
			return err
		}
		snap[filepath.ToSlash(rel)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	return snap, nil
}

func statNode(p string) (*node, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	n := &node{mode: int64(st.Mode & 0o7777), uid: int(st.Uid), gid: int(st.Gid),
		mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.typ, n.size, n.inode, n.nlink = tar.TypeReg, st.Size, st.Ino, uint64(st.Nlink)
		d, err := HashFile(p)
		if err != nil {
			return nil, err
		}
		n.digest = d
		if v, err := getXattr(p, "security.capability"); err == nil {
			n.capXattr = v
		}
	case unix.S_IFDIR:
		n.typ = tar.TypeDir
	case unix.S_IFLNK:
		t, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		n.typ, n.link = tar.TypeSymlink, t
	case unix.S_IFCHR, unix.S_IFBLK:
		n.typ = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			n.typ = tar.TypeBlock
		}
		n.major, n.minor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		n.typ = tar.TypeFifo
	default:
		return nil, fmt.Errorf("%s: unsupported file type %#o", p, st.Mode&unix.S_IFMT)
	}
	return n, nil
}

func getXattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// HashFile returns the SHA-256 of the file at p.
func HashFile(p string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("hash %s: %w", p, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// change is one entry of a layer: a path written from the new root, or
// a whiteout hiding a path of the layers below.
type change struct {
	path     string
	whiteout bool
}

// diff lists the entries of the layer that turns old into new, in tar
// order (parents before children): new or changed paths with every
// ancestor directory, all names of a hard-link group when one is
// written, and whiteouts for removed paths whose parent survives.
func diff(old, new snapshot) []change {
	include := map[string]bool{}
	byInode := map[uint64][]string{}
	for p, n := range new {
		if n.typ == tar.TypeReg && n.nlink > 1 {
			byInode[n.inode] = append(byInode[n.inode], p)
		}
	}
	var add func(p string)
	add = func(p string) {
		if include[p] {
			return
		}
		include[p] = true
		if dir := path.Dir(p); dir != "." {
			add(dir)
		}
		if n := new[p]; n.typ == tar.TypeReg && n.nlink > 1 {
			for _, q := range byInode[n.inode] {
				add(q)
			}
		}
	}
	for p, n := range new {
		if o, ok := old[p]; !ok || !o.same(n) {
			add(p)
		}
	}
	var out []change
	for p := range old {
		if _, kept := new[p]; kept {
			continue // kept, or replaced by another type: the new entry replaces it
		}
		parent := path.Dir(p)
		if parent != "." {
			if pn, ok := new[parent]; !ok || pn.typ != tar.TypeDir {
				continue // a removed ancestor hides it already
			}
			add(parent)
		}
		out = append(out, change{path: path.Join(parent, ".wh."+path.Base(p)), whiteout: true})
	}
	for p := range include {
		out = append(out, change{path: p})
	}
	slices.SortFunc(out, func(a, b change) int { return comparePaths(a.path, b.path) })
	return out
}

// comparePaths orders paths component by component, so that a directory
// comes right before its children.
func comparePaths(a, b string) int {
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
}

// layerWriter writes the tar of a layer from a root directory.
type layerWriter struct {
	root  string
	snap  snapshot
	epoch time.Time // mtimes are clamped to it (SOURCE_DATE_EPOCH style)
}

// write emits changes as a tar stream to w.
func (lw layerWriter) write(w io.Writer, changes []change) error {
	tw := tar.NewWriter(w)
	leaders := map[uint64]string{}
	for _, c := range changes {
		if c.whiteout {
			hdr := &tar.Header{Name: c.path, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: lw.epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("tar %s: %w", c.path, err)
			}
			continue
		}
		n := lw.snap[c.path]
		if n == nil {
			return fmt.Errorf("layer entry %s: not in the snapshot of %s", c.path, lw.root)
		}
		if err := lw.writeEntry(tw, c.path, n, leaders); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close layer tar: %w", err)
	}
	return nil
}

func (lw layerWriter) writeEntry(tw *tar.Writer, p string, n *node, leaders map[uint64]string) error {
	mtime := n.mtime
	if mtime.After(lw.epoch) {
		mtime = lw.epoch
	}
	hdr := &tar.Header{Name: p, Typeflag: n.typ, Mode: n.mode, Uid: n.uid, Gid: n.gid,
		ModTime: mtime.Truncate(time.Second), Linkname: n.link, Devmajor: n.major, Devminor: n.minor, Format: tar.FormatPAX}
	if n.typ == tar.TypeDir {
		hdr.Name += "/"
	}
	if n.capXattr != "" {
		hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": n.capXattr}
	}
	if n.typ == tar.TypeReg {
		if n.nlink > 1 {
			if first, ok := leaders[n.inode]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return writeHeader(tw, hdr)
			}
			leaders[n.inode] = p
		}
		hdr.Size = n.size
	}
	if err := writeHeader(tw, hdr); err != nil {
		return err
	}
	if n.typ != tar.TypeReg {
		return nil
	}
	f, err := os.Open(filepath.Join(lw.root, p))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(tw, f, n.size); err != nil {
		return fmt.Errorf("tar %s: %w (did the file change after the scan?)", p, err)
	}
	return nil
}

func writeHeader(tw *tar.Writer, hdr *tar.Header) error {
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar %s: %w", hdr.Name, err)
	}
	return nil
}

// removePaths deletes paths (shell globs relative to root) from a root
// filesystem, as a Dockerfile's `RUN rm -rf` would.
func removePaths(root string, globs ...string) error {
	for _, g := range globs {
		matches, err := filepath.Glob(filepath.Join(root, g))
		if err != nil {
			return fmt.Errorf("glob %s: %w", g, err)
		}
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return fmt.Errorf("remove %s: %w", m, err)
			}
		}
	}
	return nil
}

// writeFiles writes (or replaces) files under root with mode 0644,
// creating parent directories.
func writeFiles(root string, files map[string]string) error {
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err // replace, not write through a hard link
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}
