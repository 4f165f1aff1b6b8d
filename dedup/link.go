package dedup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// LinkMode is how an object's inode came to be: requested from InsertFile,
// and reported in LinkResult.
type LinkMode int

const (
	// LinkAuto (a request only) tries a hard link, then a reflink, then a
	// copy.
	LinkAuto LinkMode = iota
	// LinkHardlink: the object is the source file's inode (shares disk
	// blocks and page cache with it).
	LinkHardlink
	// LinkReflink: the object is a FICLONE clone of the source (shares
	// disk blocks only).
	LinkReflink
	// LinkCopy: the object is a copy of the source.
	LinkCopy
	// LinkWritten (a result only): the object was written from a stream
	// by Insert.
	LinkWritten
	// LinkNone (a result only): the object already existed; nothing was
	// linked or written.
	LinkNone
)

var linkModeNames = [...]string{"auto", "hardlink", "reflink", "copy", "written", "none"}

// String returns the mode's lower-case name ("hardlink", …).
func (m LinkMode) String() string {
	if m >= 0 && int(m) < len(linkModeNames) {
		return linkModeNames[m]
	}
	return "LinkMode(" + strconv.Itoa(int(m)) + ")"
}

// LinkResult reports how InsertFile stored an object.
type LinkResult struct {
	// Mode is the mode used, or LinkNone when the object existed.
	Mode LinkMode
	// Fallbacks holds why preferred modes were not used (LinkAuto only),
	// nil when the first choice worked.
	Fallbacks error
}

// InsertFile adds the content of the regular file at path, pinned until
// the Store is closed. See Ingest.InsertFile.
func (s *Store) InsertFile(ctx context.Context, path string, mode LinkMode) (Object, LinkResult, error) {
	in, err := s.defaultIngest(ctx)
	if err != nil {
		return Object{}, LinkResult{}, fmt.Errorf("dedup: insert file %s: %w", path, err)
	}
	return in.InsertFile(ctx, path, mode)
}

// InsertFile adds the content of the regular file at path, preferring to
// share the source's inode or blocks: with LinkAuto, a hard link, else a
// reflink, else a copy; with another mode, only that one (failing with
// ErrLinkUnsupported where it is impossible). The source is never
// modified: no chmod, chown, touch or xattr change, and it is read with
// O_NOATIME where permitted. A hard-linked object keeps the source's
// owner and mode (link(2) itself updates the inode's ctime and link
// count; nothing else changes). The source must not change while it is inserted;
// a change that is noticed (size or mtime) gives ErrSourceChanged.
//
// With fs-verity enabled on the store, a hard link is used only when the
// source already has fs-verity with the same digest (enabling it would
// modify the source).
func (in *Ingest) InsertFile(ctx context.Context, path string, mode LinkMode) (Object, LinkResult, error) {
	o, res, err := in.insertFile(ctx, path, mode)
	if err != nil {
		return o, res, fmt.Errorf("dedup: insert file %s: %w", path, err)
	}
	return o, res, nil
}

func (in *Ingest) insertFile(ctx context.Context, path string, mode LinkMode) (Object, LinkResult, error) {
	if mode < LinkAuto || mode > LinkCopy {
		return Object{}, LinkResult{}, fmt.Errorf("%w: %s is not a request mode", ErrLinkUnsupported, mode)
	}
	src, err := openSource(path)
	if err != nil {
		return Object{}, LinkResult{}, err
	}
	defer src.Close()
	var before unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &before); err != nil {
		return Object{}, LinkResult{}, fmt.Errorf("stat: %w", err)
	}
	if before.Mode&unix.S_IFMT != unix.S_IFREG {
		return Object{}, LinkResult{}, fmt.Errorf("%w: not a regular file", ErrLinkUnsupported)
	}
	h := newHashers(true)
	bp, sp := in.s.bufs.Get().(*[]byte), in.s.bufs.Get().(*[]byte)
	n, err := io.ReadFull(src, *bp)
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = h.copyHashing(ctx, nil, (*bp)[:n], *sp, src)
	}
	in.s.bufs.Put(bp)
	in.s.bufs.Put(sp)
	if err != nil {
		return Object{}, LinkResult{}, fmt.Errorf("read: %w", err)
	}
	o, _ := h.object(InsertOptions{})
	if err := unchanged(src, &before); err != nil {
		return o, LinkResult{}, err
	}
	return in.linkIn(ctx, o, src, &before, mode)
}

// openSource opens path read-only, with O_NOATIME where the caller may.
func openSource(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return f, nil
}

// unchanged checks that src still has the size and mtime of before.
func unchanged(src *os.File, before *unix.Stat_t) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Size != before.Size || st.Mtim != before.Mtim {
		return ErrSourceChanged
	}
	return nil
}

// linkIn stores the hashed source o in the first mode that works.
func (in *Ingest) linkIn(ctx context.Context, o Object, src *os.File, st *unix.Stat_t, mode LinkMode) (Object, LinkResult, error) {
	s := in.s
	if s.Has(o.Digest) {
		o, err := in.finish(ctx, o, nil, nil, LinkNone)
		if err == nil {
			return o, LinkResult{Mode: LinkNone}, nil
		}
		// Collected in between: store it afresh below.
	}
	var fallbacks []error
	try := []LinkMode{mode}
	if mode == LinkAuto {
		try = []LinkMode{LinkHardlink, LinkReflink, LinkCopy}
	}
	for _, m := range try {
		var res Object
		var err error
		if m == LinkHardlink {
			res, err = in.hardlink(ctx, o, src, st)
		} else {
			res, err = in.cloneOrCopy(ctx, o, src, st, m)
		}
		if err == nil {
			r := LinkResult{Mode: m, Fallbacks: errors.Join(fallbacks...)}
			if res.Existed {
				r.Mode = LinkNone
			}
			return res, r, nil
		}
		if !errors.Is(err, ErrLinkUnsupported) {
			return o, LinkResult{}, err
		}
		fallbacks = append(fallbacks, fmt.Errorf("%s: %w", m, err))
	}
	return o, LinkResult{Fallbacks: errors.Join(fallbacks...)}, errors.Join(fallbacks...)
}

// hardlink links the source inode itself under the object's name, under
// the store lock. The link goes through /proc/self/fd, so it is the inode
// that was hashed, even if path was replaced meanwhile; a source whose
// size or mtime changed since before is unlinked again (ErrSourceChanged).
func (in *Ingest) hardlink(ctx context.Context, o Object, src *os.File, before *unix.Stat_t) (Object, error) {
	s := in.s
	if s.verity {
		d, err := fsverity.Measure(src.Fd())
		if err != nil || Digest(d) != o.Digest {
			return o, fmt.Errorf("%w: source lacks fs-verity (%v), which the store requires", ErrLinkUnsupported, err)
		}
	}
	unlock, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return o, err
	}
	defer unlock()
	if s.Has(o.Digest) {
		o.Existed = true
		s.ctr.record(o, LinkNone)
		return o, in.pin(o.Digest, false)
	}
	final := s.Path(o.Digest)
	procPath := "/proc/self/fd/" + strconv.Itoa(int(src.Fd()))
	err = s.linkObject(o.Digest, func(final string) error {
		return unix.Linkat(unix.AT_FDCWD, procPath, unix.AT_FDCWD, final, unix.AT_SYMLINK_FOLLOW)
	})
	switch {
	case err == unix.EEXIST:
		o.Existed = true
		s.ctr.record(o, LinkNone)
		return o, in.pin(o.Digest, false)
	case err == unix.EXDEV || err == unix.EPERM || err == unix.EACCES || err == unix.EMLINK ||
		err == unix.EOPNOTSUPP || err == unix.EROFS || err == unix.ENOENT:
		// ENOENT: the source was unlinked since it was opened.
		return o, fmt.Errorf("%w: %w", ErrLinkUnsupported, err)
	case err != nil:
		return o, fmt.Errorf("hard link: %w", err)
	}
	if err := unchanged(src, before); err != nil {
		os.Remove(final)
		return o, err
	}
	if s.opts.Sync == SyncEach {
		if err := s.syncDir(filepath.Dir(final)); err != nil {
			return o, err
		}
	}
	// The source's data is as durable as the source: not marked unsynced.
	if err := in.pin(o.Digest, false); err != nil {
		return o, err
	}
	if o.SHA256 != (SHA256{}) {
		if err := s.indexSHA256(o.SHA256, o.Digest); err != nil {
			return o, err
		}
	}
	s.ctr.record(o, LinkHardlink)
	return o, nil
}

// cloneOrCopy makes a new inode from src by FICLONE (LinkReflink) or by
// copying (LinkCopy), then places it like a streamed insert. A copy is
// hashed as it is made and must match o.
func (in *Ingest) cloneOrCopy(ctx context.Context, o Object, src *os.File, st *unix.Stat_t, m LinkMode) (Object, error) {
	s := in.s
	tmp, err := s.createTemp()
	if err != nil {
		return o, err
	}
	defer tmp.discard()
	if m == LinkReflink {
		err := unix.IoctlFileClone(int(tmp.f.Fd()), int(src.Fd()))
		switch {
		case err == unix.EXDEV || err == unix.EOPNOTSUPP || err == unix.EINVAL || err == unix.ENOTTY ||
			err == unix.EPERM || err == unix.EBADF:
			return o, fmt.Errorf("%w: %w", ErrLinkUnsupported, err)
		case err != nil:
			return o, fmt.Errorf("reflink: %w", err)
		}
		if err := unchanged(src, st); err != nil {
			return o, err
		}
	} else {
		h := newHashers(false)
		bp := s.bufs.Get().(*[]byte)
		sw := &sparseWriter{f: tmp.f}
		_, err := io.CopyBuffer(io.MultiWriter(sw, h), ctxReader{ctx, io.NewSectionReader(src, 0, st.Size+1)}, *bp)
		s.bufs.Put(bp)
		if err == nil {
			err = sw.finish()
		}
		if err != nil {
			return o, fmt.Errorf("copy: %w", err)
		}
		if Digest(h.verity.Sum32()) != o.Digest {
			return o, ErrSourceChanged
		}
	}
	return in.finish(ctx, o, tmp, nil, m)
}
