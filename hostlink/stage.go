package hostlink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// StagerOptions configure a Stager.
type StagerOptions struct {
	// Dir is the staging directory, inside the object store (on the
	// same filesystem and reached through the same mount as the store's
	// objects, so that the store can hard-link a staged name). It is
	// created if missing and must be outside the host repository.
	Dir string
	// Repo is the host repository; only its objects are staged.
	Repo string
	// Helper returns the command that runs StageHelperMain in a new
	// process, with the arguments given (c/storage's reexec.Command
	// with StageHelperName first, say). The Stager adds the new mount
	// namespace and the pipes. Nil means no helper: a host object
	// reachable only through another mount of its filesystem is then
	// not stageable.
	Helper func(args ...string) (*exec.Cmd, error)
}

// StagerStats counts what Stage did.
type StagerStats struct {
	// Direct counts objects staged by a plain link(2).
	Direct int64
	// Namespace counts objects staged by the namespace helper (the host
	// object was on another mount of the same filesystem).
	Namespace int64
	// Failed counts objects that could not be staged.
	Failed int64
}

// Stager makes host objects hard-linkable into the store. On Fedora
// CoreOS the host repository is under /sysroot, a read-only mount, and the
// store is under /var, another mount of the same filesystem: link(2)
// between them fails with EXDEV although st_dev is equal. Stage gives a
// name inside the staging directory for the host object's own inode, from
// which the store can hard-link it within one mount.
//
// Stage first tries link(2) from the host object to the staging
// directory. On EXDEV with an equal st_dev it asks a helper process,
// started once per Stager in a private mount namespace, which mounts the
// whole filesystem read-write there and links the object within that one
// mount. The host repository is never written: the new name is in the
// staging directory, and link(2) only raises the host inode's link count
// (and its ctime).
//
// Each Stager stages in its own session directory under Dir, holding an
// flock on it; NewStager removes session directories no process holds
// (left by a crash). A Stager is safe for concurrent use.
type Stager struct {
	opts     StagerOptions
	repoReal string   // opts.Repo, absolute, symlinks resolved
	session  string   // Dir/s-XXXX (resolved), this Stager's names
	lock     *os.File // the session directory, flocked
	// sameMount: the repository's objects and the session are on one
	// mount, so the store can hard-link host objects where they are.
	sameMount bool
	seq       atomic.Uint64

	direct, namespace, failed atomic.Int64

	mu        sync.Mutex
	helper    *stageHelper
	helperErr error // why the helper is unusable, once it failed
	closed    bool
}

// NewStager creates the staging directory if needed, removes stale
// sessions from it, and opens a session of its own.
func NewStager(opts StagerOptions) (*Stager, error) {
	if opts.Dir == "" || opts.Repo == "" {
		return nil, fmt.Errorf("%w: NewStager needs Dir and Repo", errInvalidOptions)
	}
	if checkOutside(opts.Dir, opts.Repo) != nil {
		return nil, fmt.Errorf("%w: staging directory %s is inside the repository %s", errInvalidOptions, opts.Dir, opts.Repo)
	}
	repo, err := realPath(opts.Repo)
	if err != nil {
		return nil, fmt.Errorf("hostlink: repository: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("hostlink: staging directory: %w", err)
	}
	if err := cleanStaleSessions(opts.Dir); err != nil {
		return nil, err
	}
	dir, err := realPath(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("hostlink: staging directory: %w", err)
	}
	session, err := os.MkdirTemp(dir, "s-")
	if err != nil {
		return nil, fmt.Errorf("hostlink: staging session: %w", err)
	}
	lock, err := os.Open(session)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(session)
		return nil, fmt.Errorf("hostlink: lock staging session %s: %w", session, err)
	}
	same := sameMount(filepath.Join(repo, "objects"), session)
	return &Stager{opts: opts, repoReal: repo, session: session, lock: lock, sameMount: same}, nil
}

// sameMount reports whether a and b are on the same mount (statx mount
// IDs); false when either cannot be examined.
func sameMount(a, b string) bool {
	var sa, sb unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, a, 0, unix.STATX_MNT_ID, &sa) != nil ||
		unix.Statx(unix.AT_FDCWD, b, 0, unix.STATX_MNT_ID, &sb) != nil {
		return false
	}
	return sa.Mask&unix.STATX_MNT_ID != 0 && sb.Mask&unix.STATX_MNT_ID != 0 && sa.Mnt_id == sb.Mnt_id
}

// realPath returns p absolute, with symlinks resolved.
func realPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(a)
}

// cleanStaleSessions removes the session directories under dir that no
// live Stager holds locked.
func cleanStaleSessions(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("hostlink: list staging directory: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "s-") {
			os.Remove(p)
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			if err := os.RemoveAll(p); err != nil {
				f.Close()
				return fmt.Errorf("hostlink: remove stale staging session: %w", err)
			}
		}
		f.Close()
	}
	return nil
}

// Stats returns the counts so far.
func (s *Stager) Stats() StagerStats {
	return StagerStats{Direct: s.direct.Load(), Namespace: s.namespace.Load(), Failed: s.failed.Load()}
}

// Stage links the host object at hostPath (a regular file inside the
// repository) under a new name in the session directory and returns that
// name and a release func that removes it. The staged name is the host
// object's inode. When the repository is on the session's own mount no
// name is needed: Stage returns hostPath itself and a nil release. An
// error wrapping errNotStageable means the object cannot be hard-linked
// into the store from here (another filesystem, no helper, the helper
// failed); the host path itself may still be cloned or copied.
func (s *Stager) Stage(ctx context.Context, hostPath string) (string, func(), error) {
	staged, err := s.stage(ctx, hostPath)
	if err != nil {
		s.failed.Add(1)
		return "", nil, fmt.Errorf("hostlink: stage %s: %w", hostPath, err)
	}
	if staged == hostPath {
		return staged, nil, nil
	}
	return staged, func() { os.Remove(staged) }, nil
}

func (s *Stager) stage(ctx context.Context, hostPath string) (string, error) {
	rel, err := filepath.Rel(s.opts.Repo, filepath.Clean(hostPath))
	if err != nil || !filepath.IsLocal(rel) {
		rel, err = filepath.Rel(s.repoReal, filepath.Clean(hostPath))
	}
	if err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%w: not inside the repository %s", errNotStageable, s.opts.Repo)
	}
	var host unix.Stat_t
	if err := unix.Lstat(hostPath, &host); err != nil {
		return "", fmt.Errorf("%w: %w", errNotStageable, err)
	}
	if host.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", fmt.Errorf("%w: not a regular file", errNotStageable)
	}
	if s.sameMount {
		s.direct.Add(1)
		return hostPath, nil
	}
	name := "o-" + strconv.FormatUint(s.seq.Add(1), 10)
	staged := filepath.Join(s.session, name)
	err = unix.Link(hostPath, staged)
	counter := &s.direct
	if errors.Is(err, unix.EXDEV) {
		var st unix.Stat_t
		if serr := unix.Stat(s.session, &st); serr != nil {
			return "", fmt.Errorf("stat staging session: %w", serr)
		}
		if st.Dev != host.Dev {
			return "", fmt.Errorf("%w: the repository and the store are on different filesystems", errNotStageable)
		}
		counter = &s.namespace
		err = s.helperLink(ctx, rel, name)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNotStageable, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(staged, &st); err != nil || st.Ino != host.Ino || st.Dev != host.Dev {
		os.Remove(staged)
		return "", fmt.Errorf("%w: staged name is not the host object's inode (%v)", errNotStageable, err)
	}
	counter.Add(1)
	return staged, nil
}

// helperLink has the namespace helper link rel (inside the repository)
// to name (inside the session), starting the helper on first use.
func (s *Stager) helperLink(ctx context.Context, rel, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("stager closed")
	}
	if s.helperErr != nil {
		return s.helperErr
	}
	if s.helper == nil {
		if s.opts.Helper == nil {
			s.helperErr = errors.New("hard link across mounts needs the namespace helper, and none is configured")
			return s.helperErr
		}
		h, err := startStageHelper(ctx, s.opts.Helper, s.repoReal, s.session)
		if err != nil {
			s.helperErr = fmt.Errorf("namespace helper: %w", err)
			return s.helperErr
		}
		s.helper = h
	}
	err := s.helper.link(rel, name)
	var broken *helperBrokenError
	if errors.As(err, &broken) {
		s.helperErr = err
		s.helper.stop()
		s.helper = nil
	}
	return err
}

// Close stops the helper and removes the session directory with any
// names still staged.
func (s *Stager) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.helper != nil {
		err = s.helper.stop()
		s.helper = nil
	}
	if rerr := os.RemoveAll(s.session); rerr != nil && err == nil {
		err = fmt.Errorf("hostlink: remove staging session: %w", rerr)
	}
	s.lock.Close()
	return err
}
