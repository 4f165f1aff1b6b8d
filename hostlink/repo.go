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

// repoMode is the storage mode of an ostree repository (core.mode in its
// config).
type repoMode int

// The repository modes whose file objects are plain files that can be
// shared. Archive repositories are refused by OpenRepo.
const (
	// modeBare stores file objects with their real owner, mode and
	// xattrs; symlinks are symlinks.
	modeBare repoMode = iota
	// modeBareUser stores file objects owned by the repository's user;
	// the real uid, gid, mode and xattrs are in the user.ostreemeta
	// xattr; symlinks are regular files holding the target.
	modeBareUser
	// modeBareUserOnly stores file objects with uid and gid 0 implied,
	// no xattrs, and a canonical mode; symlinks are symlinks.
	modeBareUserOnly
)

// String returns the mode as written in the repository config.
func (m repoMode) String() string {
	switch m {
	case modeBare:
		return "bare"
	case modeBareUser:
		return "bare-user"
	case modeBareUserOnly:
		return "bare-user-only"
	}
	return "RepoMode(" + strconv.Itoa(int(m)) + ")"
}

// Repo is a read-only handle on a local ostree repository. It holds no
// open descriptors and is safe for concurrent use. Nothing in this
// package writes to the repository or changes an object's metadata.
type Repo struct {
	path string
	mode repoMode
	t    *types // parsed GVariant formats, read only
}

// OpenRepo opens the ostree repository at path (the directory holding
// config, objects/ and refs/), reading its mode from config. Archive
// repositories are refused with errUnsupportedMode.
func OpenRepo(path string) (*Repo, error) {
	data, err := readFileNoatime(filepath.Join(path, "config"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errNotRepo, path, err)
	}
	core, ok := parseConfig(data)["core"]
	if !ok {
		return nil, fmt.Errorf("%w: %s: config has no [core] group", errNotRepo, path)
	}
	if v := core["repo_version"]; v != "" && v != "1" {
		return nil, fmt.Errorf("%w: %s: repo_version %q, want 1", errNotRepo, path, v)
	}
	r := &Repo{path: path, t: newTypes()}
	switch m := core["mode"]; m {
	case "", "bare": // ostree's default mode is bare
		r.mode = modeBare
	case "bare-user":
		r.mode = modeBareUser
	case "bare-user-only":
		r.mode = modeBareUserOnly
	case "archive", "archive-z2":
		return nil, fmt.Errorf("%w %q in %s: archive repositories store file objects "+
			"compressed (.filez), so their content cannot be shared; use a bare, "+
			"bare-user or bare-user-only repository", errUnsupportedMode, m, path)
	default:
		return nil, fmt.Errorf("%w %q in %s", errUnsupportedMode, m, path)
	}
	if st, err := os.Stat(filepath.Join(path, "objects")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s: no objects directory", errNotRepo, path)
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

// objectPath returns the path of an object: objects/xx/<62 hex>.<type>.
func (r *Repo) objectPath(c checksum, t objectType) string {
	s := c.String()
	return filepath.Join(r.path, "objects", s[:2], s[2:]+"."+string(t))
}

// fileObjectPath returns the path of a file object. Its content is the
// file's content for regular files (in every supported mode).
func (r *Repo) fileObjectPath(c checksum) string {
	return r.objectPath(c, objectFile)
}

// readMetaObject reads a metadata object (commit, dirtree, dirmeta) and
// checks that its SHA-256 equals its name, as ostree names them.
func (r *Repo) readMetaObject(c checksum, t objectType) ([]byte, error) {
	p := r.objectPath(c, t)
	data, err := readFileNoatime(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s %s: %w", errMissingObject, t, c, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", t, c, err)
	}
	if sum := sha256.Sum256(data); sum != c {
		return nil, fmt.Errorf("%w: %s: content checksum is %x", errCorrupt, p, sum)
	}
	return data, nil
}

// refs returns every ref of the repository with the commit it points to:
// local branches under refs/heads by name ("fedora/stable"), remote
// refs under refs/remotes/<remote>/ as "remote:name" (ostree's
// refspec syntax).
func (r *Repo) refs() (map[string]checksum, error) {
	refs := map[string]checksum{}
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
func (r *Repo) readRefDir(dir, prefix string, refs map[string]checksum) error {
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
func readRefFile(p string) (checksum, error) {
	data, err := readFileNoatime(p)
	if err != nil {
		return checksum{}, err
	}
	c, err := parseChecksum(strings.TrimSpace(string(data)))
	if err != nil {
		return checksum{}, fmt.Errorf("%w: %s: %w", errBadRef, p, err)
	}
	return c, nil
}

// resolveRef returns the commit a ref points to. ref is a branch name
// ("test"), a remote ref ("remote:name"), or a commit checksum itself.
func (r *Repo) resolveRef(ref string) (checksum, error) {
	if c, err := parseChecksum(ref); err == nil {
		return c, nil
	}
	p := filepath.Join(r.path, "refs", "heads", ref)
	if remote, name, ok := strings.Cut(ref, ":"); ok {
		p = filepath.Join(r.path, "refs", "remotes", remote, name)
	}
	if !fs.ValidPath(strings.ReplaceAll(ref, ":", "/")) {
		return checksum{}, fmt.Errorf("%w: %q", errBadRef, ref)
	}
	c, err := readRefFile(p)
	if err != nil {
		return checksum{}, fmt.Errorf("resolving ref %q: %w", ref, err)
	}
	return c, nil
}

// deployment is one deployment of an ostree sysroot: the checkout of a
// commit under /ostree/deploy/<osname>/deploy/<checksum>.<serial>.
type deployment struct {
	OSName   string
	Checksum checksum
	Serial   int
	Path     string
}

// deployments lists the deployments of the ostree sysroot at sysroot
// ("/" on a booted host, whose repository is sysroot/ostree/repo): the
// booted, pending and rollback deployments all appear, sorted by OS
// name, then serial. A sysroot without deployments gives none.
func deployments(sysroot string) ([]deployment, error) {
	dirs, err := filepath.Glob(filepath.Join(sysroot, "ostree", "deploy", "*", "deploy", "*"))
	if err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	var out []deployment
	for _, d := range dirs {
		name := filepath.Base(d)
		sum, serial, ok := strings.Cut(name, ".")
		if !ok || strings.Contains(serial, ".") { // skip <checksum>.<serial>.origin
			continue
		}
		c, err := parseChecksum(sum)
		n, err2 := strconv.Atoi(serial)
		if err != nil || err2 != nil {
			continue
		}
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			continue
		}
		osname := filepath.Base(filepath.Dir(filepath.Dir(d)))
		out = append(out, deployment{OSName: osname, Checksum: c, Serial: n, Path: d})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].OSName != out[j].OSName {
			return out[i].OSName < out[j].OSName
		}
		return out[i].Serial < out[j].Serial
	})
	return out, nil
}
