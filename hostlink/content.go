package hostlink

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// saveBatch is how many digests LookupContent learns before it appends
// them to the cache file (the rest are appended at Close).
const saveBatch = 256

// LookupContent returns the path of a host file object holding content:
// size bytes read from content, whose digest (IndexOptions.Hash) is
// digest; false if there is none. It is lookupDigest for a caller that
// holds the content. No
// regular file object is opened (only stat'ed and its xattrs read; a
// bare-user symlink object's stored target is): for the candidates whose
// digest is not known it
// computes ostree's own checksum of content under each distinct file
// header (owner, mode, xattrs) among them, and a candidate whose name is
// that checksum holds content — the same proof ostree fsck checks. A
// match is recorded in the digest cache under digest (appended to the
// file in batches and at Close), so that later lookups, in this process
// or another, match it by digest alone.
//
// The content of a damaged host object (bytes that no longer checksum to
// its name) is thus not caught here; ostree fsck finds it on the host
// side, and re-hashing the objects linked from it (dedup's fsck) on ours.
func (ix *Index) LookupContent(ctx context.Context, size int64, digest [32]byte, content io.ReaderAt) (string, bool, error) {
	defer ix.lockSize(size)()
	p, ok, unknown := ix.matchKnown(size, func(e *cacheEntry) bool { return e.digest == digest })
	if ok || len(unknown) == 0 {
		return p, ok, nil
	}
	sums := map[string]checksum{} // file header → ostree checksum of content under it
	for _, o := range unknown {
		if err := ctx.Err(); err != nil {
			return "", false, err
		}
		hdr, isContent, gone, err := ix.header(o)
		if err != nil {
			return "", false, err
		}
		if gone || !isContent {
			ix.mu.Lock()
			if gone {
				ix.forget(o)
			} else {
				ix.remember(cacheEntry{name: o.sum, size: o.size, mtime: o.mtime})
			}
			ix.mu.Unlock()
			continue
		}
		sum, done := sums[hdr]
		if !done {
			if sum, err = checksumContent(hdr, content, size); err != nil {
				return "", false, err
			}
			sums[hdr] = sum
		}
		if sum != o.sum {
			continue
		}
		e := cacheEntry{name: o.sum, size: o.size, mtime: o.mtime, content: true, digest: digest}
		if !ix.opts.NoSHA256 {
			if e.sha256, err = sha256Content(content, size); err != nil {
				return "", false, err
			}
			e.hasSHA = true
		}
		ix.mu.Lock()
		ix.remember(e)
		p, ok := ix.stillThere(o)
		ix.mu.Unlock()
		if ok {
			return p, true, ix.saveIfFull()
		}
	}
	return "", false, ix.saveIfFull()
}

// header returns the serialized ostree file header of object o (its
// logical owner, mode and xattrs), read once per object and kept in
// memory. isContent is false for a bare-user symlink stored as a file;
// gone reports an object that vanished or changed since the cheap pass.
func (ix *Index) header(o objectStat) (hdr string, isContent, gone bool, err error) {
	ix.mu.Lock()
	hdr, known := ix.headers[o.sum]
	ix.mu.Unlock()
	if known {
		return hdr, true, false, nil
	}
	fi, err := ix.repo.readFileInfo(o.sum)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, true, nil
	}
	if err != nil {
		return "", false, false, err
	}
	if !fi.IsRegular() {
		return "", false, false, nil
	}
	if fi.Size != o.size {
		return "", false, true, nil
	}
	b, err := ix.repo.fileHeader(fi)
	if err != nil {
		return "", false, false, fmt.Errorf("file object %s header: %w", o.sum, err)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if h, ok := ix.headerSet[string(b)]; ok {
		hdr = h // one string per distinct header
	} else {
		hdr = string(b)
		ix.headerSet[hdr] = hdr
	}
	ix.headers[o.sum] = hdr
	return hdr, true, false, nil
}

// checksumContent is ostree's checksum of a regular file with header hdr
// and size bytes of content (see checksumFile).
func checksumContent(hdr string, content io.ReaderAt, size int64) (checksum, error) {
	h := newFileChecksum([]byte(hdr))
	if _, err := io.Copy(h, io.NewSectionReader(content, 0, size)); err != nil {
		return checksum{}, fmt.Errorf("reading the content looked up: %w", err)
	}
	var sum checksum
	h.Sum(sum[:0])
	return sum, nil
}

// sha256Content is the plain SHA-256 of size bytes of content.
func sha256Content(content io.ReaderAt, size int64) ([32]byte, error) {
	h := sha256.New()
	var sum [32]byte
	if _, err := io.Copy(h, io.NewSectionReader(content, 0, size)); err != nil {
		return sum, fmt.Errorf("reading the content looked up: %w", err)
	}
	h.Sum(sum[:0])
	return sum, nil
}

// remember records an entry in memory now and in the cache file with
// the next save. Call with ix.mu held.
func (ix *Index) remember(e cacheEntry) {
	ix.cache.entries[e.name] = e
	ix.unsaved = append(ix.unsaved, e)
}

// saveIfFull saves the remembered entries once there are saveBatch.
func (ix *Index) saveIfFull() error {
	ix.mu.Lock()
	full := len(ix.unsaved) >= saveBatch
	ix.mu.Unlock()
	if !full {
		return nil
	}
	return ix.save()
}

// save appends the remembered entries to the cache file, under the
// cache lock, after loading what other processes appended.
func (ix *Index) save() error {
	unlock, err := ix.cache.lock()
	if err != nil {
		return err
	}
	defer unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if len(ix.unsaved) == 0 {
		return nil
	}
	if err := ix.cache.refresh(); err != nil {
		return err
	}
	if err := ix.cache.add(ix.unsaved...); err != nil {
		return err
	}
	ix.unsaved = ix.unsaved[:0]
	return nil
}
