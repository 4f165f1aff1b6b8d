package driver

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
)

// pullRepoDirName is the directory, in the driver's home, shaped like an
// ostree repository's payload links. See pullRepo.
const pullRepoDirName = "partial-pull-repo"

// PartialPullRepo returns the directory c/storage's pull option
// ostree_repos must list for partial pulls into the store at graphRoot to
// take contents the store or the host repository already has, instead
// of fetching them: `[storage.options.pull_options] ostree_repos =
// "<graphroot>/cfs/partial-pull-repo"`.
func PartialPullRepo(graphRoot string) string {
	return filepath.Join(graphRoot, Name, pullRepoDirName)
}

// pullRepo is the directory where c/storage's differ finds, by plain
// SHA-256, the contents a partial pull would otherwise fetch. The differ
// looks a file of the TOC up in every ostree_repos directory as
// objects/xx/<the other 62 hex digits of its SHA-256>.payload-link
// (ostree's payload links), checks the size and copies the file it
// names into its staging directory. So this directory holds such a name,
// a symbolic link, for every object of the store and every content of
// the host repository, to that object; the differ only reads them.
//
// A link is never wrong, at worst dangling: its name is a function of
// the content, and a store object's path is too. A dangling link (its
// object collected, or its host object pruned) is passed over by the
// differ and replaced at the next refresh if another object has the
// content. What the differ copies is checked like any fetched file: the
// layer rebuilt from the staged files must have the DiffID of the image.
type pullRepo struct {
	dir string

	mu sync.Mutex
	// linked holds the links this process made or found in place, by
	// SHA-256, to their targets: a refresh only touches new contents.
	linked map[[32]byte]string
	made   map[string]bool // objects/xx directories known to exist
}

func newPullRepo(home string) *pullRepo {
	return &pullRepo{dir: filepath.Join(home, pullRepoDirName), linked: map[[32]byte]string{}, made: map[string]bool{}}
}

// pullSource lists contents: add is called with each content's SHA-256
// and the path of a file holding it.
type pullSource func(ctx context.Context, add func(sha [32]byte, path string) error) error

// storeSource lists the objects of a store.
func storeSource(s *dedup.Store) pullSource {
	return func(ctx context.Context, add func([32]byte, string) error) error {
		return s.ForEachSHA256(ctx, func(sha dedup.SHA256, d dedup.Digest) error {
			return add(sha, s.Path(d))
		})
	}
}

// refresh links every content the sources list that has no valid link
// yet; sources listed first win.
func (r *pullRepo) refresh(ctx context.Context, sources ...pullSource) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, src := range sources {
		if err := src(ctx, r.link); err != nil {
			return fmt.Errorf("cfs: partial-pull repository %s: %w", r.dir, err)
		}
	}
	return nil
}

// link makes objects/xx/<rest>.payload-link name target, unless a valid
// link for sha is there already. The caller holds r.mu.
func (r *pullRepo) link(sha [32]byte, target string) error {
	if _, ok := r.linked[sha]; ok {
		return nil
	}
	h := hex.EncodeToString(sha[:])
	dir := filepath.Join(r.dir, "objects", h[:2])
	if !r.made[dir] {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		r.made[dir] = true
	}
	name := filepath.Join(dir, h[2:]+".payload-link")
	err := os.Symlink(target, name)
	if errors.Is(err, fs.ErrExist) {
		if _, serr := os.Stat(name); serr == nil {
			r.linked[sha] = target // a valid link, maybe to another copy
			return nil
		}
		// Dangling (or not a link): replace it atomically.
		tmp := fmt.Sprintf("%s.tmp-%d", name, os.Getpid())
		if err = os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err = os.Symlink(target, tmp); err == nil {
			err = unix.Rename(tmp, name)
		}
	}
	if err != nil {
		return err
	}
	r.linked[sha] = target
	return nil
}

// refreshPullRepo links into d's partial-pull repository the contents
// of d's object store, its peer's in a split store, and the host
// repository's.
func (d *core) refreshPullRepo(ctx context.Context) error {
	srcs := []pullSource{storeSource(d.contents.objects)}
	if d.peer != nil {
		srcs = append(srcs, storeSource(d.peer.contents.objects))
	}
	if h := d.contents.host; h != nil {
		srcs = append(srcs, h.pullSource())
	}
	return d.pull.refresh(ctx, srcs...)
}

// prune removes links whose content is gone and temporary links left by
// a crash, and returns how many it removed.
func (r *pullRepo) prune() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.linked) // what is kept is found valid again at the next refresh
	top := filepath.Join(r.dir, "objects")
	dirs, err := os.ReadDir(top)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cfs: prune partial-pull repository: %w", err)
	}
	n := 0
	for _, dir := range dirs {
		ents, err := os.ReadDir(filepath.Join(top, dir.Name()))
		if err != nil {
			return n, fmt.Errorf("cfs: prune partial-pull repository: %w", err)
		}
		for _, e := range ents {
			p := filepath.Join(top, dir.Name(), e.Name())
			if _, err := os.Stat(p); err == nil && strings.HasSuffix(e.Name(), ".payload-link") {
				continue
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, fmt.Errorf("cfs: prune partial-pull repository: %w", err)
			}
			n++
		}
	}
	return n, nil
}
