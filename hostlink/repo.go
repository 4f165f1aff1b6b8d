package hostlink

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// RepoMode is the storage mode of an ostree repository (core.mode in its
// config).
type RepoMode int

// The repository modes whose file objects are plain files that can be
// shared. Archive repositories are refused by OpenRepo.
const (
	// ModeBare stores file objects with their real owner, mode and
	// xattrs; symlinks are symlinks.
	ModeBare RepoMode = iota
	// ModeBareUser stores file objects owned by the repository's user;
	// the real uid, gid, mode and xattrs are in the user.ostreemeta
	// xattr; symlinks are regular files holding the target.
	ModeBareUser
	// ModeBareUserOnly stores file objects with uid and gid 0 implied,
	// no xattrs, and a canonical mode; symlinks are symlinks.
	ModeBareUserOnly
)

// String returns the mode as written in the repository config.
func (m RepoMode) String() string {
	switch m {
	case ModeBare:
		return "bare"
	case ModeBareUser:
		return "bare-user"
	case ModeBareUserOnly:
		return "bare-user-only"
	}
	return "RepoMode(" + strconv.Itoa(int(m)) + ")"
}

// Repo is a read-only handle on a local ostree repository. It holds no
// open descriptors and is safe for concurrent use. Nothing in this
// package writes to the repository or changes an object's metadata.
type Repo struct {
	path string
	mode RepoMode
	t    *types // parsed GVariant formats, read only
}

// OpenRepo opens the ostree repository at path (the directory holding
// config, objects/ and refs/), reading its mode from config. Archive
// repositories are refused with ErrUnsupportedMode.
func OpenRepo(path string) (*Repo, error) {
	data, err := readFileNoatime(filepath.Join(path, "config"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotRepo, path, err)
	}
	core, ok := parseConfig(data)["core"]
	if !ok {
		return nil, fmt.Errorf("%w: %s: config has no [core] group", ErrNotRepo, path)
	}
	if v := core["repo_version"]; v != "" && v != "1" {
		return nil, fmt.Errorf("%w: %s: repo_version %q, want 1", ErrNotRepo, path, v)
	}
	r := &Repo{path: path, t: newTypes()}
	switch m := core["mode"]; m {
	case "", "bare": // ostree's default mode is bare
		r.mode = ModeBare
	case "bare-user":
		r.mode = ModeBareUser
	case "bare-user-only":
		r.mode = ModeBareUserOnly
	case "archive", "archive-z2":
		return nil, fmt.Errorf("%w %q in %s: archive repositories store file objects "+
			"compressed (.filez), so their content cannot be shared; use a bare, "+
			"bare-user or bare-user-only repository", ErrUnsupportedMode, m, path)
	default:
		return nil, fmt.Errorf("%w %q in %s", ErrUnsupportedMode, m, path)
	}
	if st, err := os.Stat(filepath.Join(path, "objects")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s: no objects directory", ErrNotRepo, path)
	}
	return r, nil
}

// parseConfig parses the GKeyFile (INI) syntax of an ostree config:
// groups of key=value lines; comments start with '#' or ';'.
func parseConfig(data []byte) map[string]map[string]string {
	groups := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			name := line[1 : len(line)-1]
			if groups[name] == nil {
				groups[name] = map[string]string{}
			}
			cur = groups[name]
		case cur != nil:
			if k, v, ok := strings.Cut(line, "="); ok {
				cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return groups
}

// Path returns the repository directory.
func (r *Repo) Path() string { return r.path }

// Mode returns the repository mode.
func (r *Repo) Mode() RepoMode { return r.mode }

// ObjectPath returns the path of an object: objects/xx/<62 hex>.<type>.
func (r *Repo) ObjectPath(c Checksum, t ObjectType) string {
	s := c.String()
	return filepath.Join(r.path, "objects", s[:2], s[2:]+"."+string(t))
}

// FileObjectPath returns the path of a file object. Its content is the
// file's content for regular files (in every supported mode).
func (r *Repo) FileObjectPath(c Checksum) string {
	return r.ObjectPath(c, ObjectFile)
}

// readMetaObject reads a metadata object (commit, dirtree, dirmeta) and
// checks that its SHA-256 equals its name, as ostree names them.
func (r *Repo) readMetaObject(c Checksum, t ObjectType) ([]byte, error) {
	p := r.ObjectPath(c, t)
	data, err := readFileNoatime(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrMissingObject, t, c, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", t, c, err)
	}
	if sum := sha256.Sum256(data); sum != c {
		return nil, fmt.Errorf("%w: %s: content checksum is %x", ErrCorrupt, p, sum)
	}
	return data, nil
}

// Refs returns every ref of the repository with the commit it points to:
// local branches under refs/heads by name ("fedora/stable"), remote
// refs under refs/remotes/<remote>/ as "remote:name" (ostree's
// refspec syntax).
func (r *Repo) Refs() (map[string]Checksum, error) {
	refs := map[string]Checksum{}
	if err := r.readRefDir(filepath.Join(r.path, "refs", "heads"), "", refs); err != nil {
		return nil, err
	}
	remotes := filepath.Join(r.path, "refs", "remotes")
	ents, err := os.ReadDir(remotes)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing remotes: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := r.readRefDir(filepath.Join(remotes, e.Name()), e.Name()+":", refs); err != nil {
				return nil, err
			}
		}
	}
	return refs, nil
}

// readRefDir adds the refs found under dir (recursively) to refs, each
// named prefix + its path relative to dir.
func (r *Repo) readRefDir(dir, prefix string, refs map[string]Checksum) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		c, err := readRefFile(p)
		if err != nil {
			return err
		}
		refs[prefix+filepath.ToSlash(rel)] = c
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading refs under %s: %w", dir, err)
	}
	return nil
}

// readRefFile reads a ref file: a checksum and a newline.
func readRefFile(p string) (Checksum, error) {
	data, err := readFileNoatime(p)
	if err != nil {
		return Checksum{}, err
	}
	c, err := ParseChecksum(strings.TrimSpace(string(data)))
	if err != nil {
		return Checksum{}, fmt.Errorf("%w: %s: %w", ErrBadRef, p, err)
	}
	return c, nil
}

// ResolveRef returns the commit a ref points to. ref is a branch name
// ("test"), a remote ref ("remote:name"), or a commit checksum itself.
func (r *Repo) ResolveRef(ref string) (Checksum, error) {
	if c, err := ParseChecksum(ref); err == nil {
		return c, nil
	}
	p := filepath.Join(r.path, "refs", "heads", ref)
	if remote, name, ok := strings.Cut(ref, ":"); ok {
		p = filepath.Join(r.path, "refs", "remotes", remote, name)
	}
	if !fs.ValidPath(strings.ReplaceAll(ref, ":", "/")) {
		return Checksum{}, fmt.Errorf("%w: %q", ErrBadRef, ref)
	}
	c, err := readRefFile(p)
	if err != nil {
		return Checksum{}, fmt.Errorf("resolving ref %q: %w", ref, err)
	}
	return c, nil
}

// Deployment is one deployment of an ostree sysroot: the checkout of a
// commit under /ostree/deploy/<osname>/deploy/<checksum>.<serial>.
type Deployment struct {
	OSName   string
	Checksum Checksum
	Serial   int
	Path     string
}

// Deployments lists the deployments of the ostree sysroot at sysroot
// ("/" on a booted host, whose repository is sysroot/ostree/repo): the
// booted, pending and rollback deployments all appear, sorted by OS
// name, then serial. A sysroot without deployments gives none.
func Deployments(sysroot string) ([]Deployment, error) {
	dirs, err := filepath.Glob(filepath.Join(sysroot, "ostree", "deploy", "*", "deploy", "*"))
	if err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	var out []Deployment
	for _, d := range dirs {
		name := filepath.Base(d)
		sum, serial, ok := strings.Cut(name, ".")
		if !ok || strings.Contains(serial, ".") { // skip <checksum>.<serial>.origin
			continue
		}
		c, err := ParseChecksum(sum)
		n, err2 := strconv.Atoi(serial)
		if err != nil || err2 != nil {
			continue
		}
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			continue
		}
		osname := filepath.Base(filepath.Dir(filepath.Dir(d)))
		out = append(out, Deployment{OSName: osname, Checksum: c, Serial: n, Path: d})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].OSName != out[j].OSName {
			return out[i].OSName < out[j].OSName
		}
		return out[i].Serial < out[j].Serial
	})
	return out, nil
}
