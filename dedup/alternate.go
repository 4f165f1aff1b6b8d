package dedup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Alternate finds existing files that hold a content, so that Insert
// links one in instead of writing the streamed bytes (the host's ostree
// objects, say). See InsertOptions.Alternate.
type Alternate interface {
	// Find looks for a file whose content has the fs-verity digest d and
	// size bytes. content reads the streamed bytes (size of them) until
	// Find returns, for an Alternate that compares rather than hashes
	// its candidates. found is false when there is none, or none that
	// can be used. An error means the lookup itself failed; either way
	// Insert then writes the streamed bytes, and Stats counts the lookup
	// (Alternates).
	Find(ctx context.Context, d Digest, size int64, content io.ReaderAt) (c Candidate, found bool, err error)
}

// Candidate is a file an Alternate found.
type Candidate struct {
	// Path names the file.
	Path string
	// Release, if not nil, is called once the file is no longer needed.
	Release func()
}

// tryAlternate links in the file opts.Alternate finds for the absent
// object o, whose content the caller holds in content. The alternate is
// checked byte for byte against content (which is o by construction): as
// strict as hashing it again, and several times cheaper. It reports
// false when there is no alternate or it cannot be used, and counts why;
// the caller then stores the streamed bytes.
func (in *Ingest) tryAlternate(ctx context.Context, o Object, content io.ReaderAt, opts InsertOptions) (Object, bool) {
	if opts.Alternate == nil || o.Size == 0 || in.s.Has(o.Digest) {
		return o, false
	}
	c, found, err := opts.Alternate.Find(ctx, o.Digest, o.Size, content)
	if c.Release != nil {
		defer c.Release()
	}
	if err != nil {
		in.s.ctr.alternateMissed(ctx, o, err, true)
		return o, false
	}
	if !found {
		in.s.ctr.alternateMissed(ctx, o, nil, false)
		return o, false
	}
	if opts.TrustAlternate {
		content = nil
	}
	lo, res, err := in.insertSame(ctx, c.Path, opts.AlternateMode, o, content)
	if err != nil {
		in.s.ctr.alternateMissed(ctx, o, fmt.Errorf("link in %s: %w", c.Path, err), false)
		return o, false
	}
	lo.Linked = res.Mode
	if res.Mode == LinkNone {
		lo.Linked = LinkAuto // the object appeared meanwhile: nothing was linked
	}
	return lo, true
}

// insertSame links in the file at path as object o after checking that
// it holds exactly content (o's bytes), and that it did not change while
// it was compared. With content nil (a trusted alternate) only its size
// is checked.
func (in *Ingest) insertSame(ctx context.Context, path string, mode LinkMode, o Object, content io.ReaderAt) (Object, LinkResult, error) {
	src, err := openSource(path)
	if err != nil {
		return o, LinkResult{}, err
	}
	defer src.Close()
	var before unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &before); err != nil {
		return o, LinkResult{}, fmt.Errorf("stat: %w", err)
	}
	if before.Mode&unix.S_IFMT != unix.S_IFREG {
		return o, LinkResult{}, fmt.Errorf("%w: not a regular file", ErrLinkUnsupported)
	}
	if before.Size != o.Size {
		return o, LinkResult{}, fmt.Errorf("%w: %s has %d bytes, expected %d", ErrDigestMismatch, path, before.Size, o.Size)
	}
	if content != nil {
		if err := in.s.sameContent(ctx, src, content, o.Size); err != nil {
			return o, LinkResult{}, fmt.Errorf("%s: %w", path, err)
		}
		if err := unchanged(src, &before); err != nil {
			return o, LinkResult{}, err
		}
	}
	return in.linkIn(ctx, o, src, &before, mode)
}

// sameContent is SameContent with the store's pooled buffers.
func (s *Store) sameContent(ctx context.Context, a io.Reader, b io.ReaderAt, size int64) error {
	ap, bp := s.bufs.Get().(*[]byte), s.bufs.Get().(*[]byte)
	defer s.bufs.Put(ap)
	defer s.bufs.Put(bp)
	return compareContent(ctx, a, b, size, *ap, *bp)
}

// SameContent compares size bytes of a and b, and checks that a ends
// there; a difference is ErrDigestMismatch. It is how Insert checks an
// Alternate's file against the streamed content.
func SameContent(ctx context.Context, a io.Reader, b io.ReaderAt, size int64) error {
	return compareContent(ctx, a, b, size, make([]byte, 64<<10), make([]byte, 64<<10))
}

// compareContent is SameContent with the buffers it reads into.
func compareContent(ctx context.Context, a io.Reader, b io.ReaderAt, size int64, abuf, bbuf []byte) error {
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(len(abuf)), size-off))
		if _, err := io.ReadFull(a, abuf[:n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: content ends before %d bytes", ErrDigestMismatch, size)
			}
			return fmt.Errorf("read: %w", err)
		}
		if m, err := b.ReadAt(bbuf[:n], off); m < n {
			return fmt.Errorf("read the streamed content at %d: %w", off, err)
		}
		if !bytes.Equal(abuf[:n], bbuf[:n]) {
			return fmt.Errorf("%w: content differs within bytes %d-%d", ErrDigestMismatch, off, off+int64(n))
		}
		off += int64(n)
	}
	var one [1]byte
	if n, _ := a.Read(one[:]); n != 0 {
		return fmt.Errorf("%w: content goes on past %d bytes", ErrDigestMismatch, size)
	}
	return nil
}
