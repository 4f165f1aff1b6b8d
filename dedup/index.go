package dedup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The SHA-256 index maps a content's plain SHA-256 to its fs-verity
// digest: index/sha256/xx/<62 hex> is a symbolic link whose target is the
// 64-hex fs-verity digest. Both are functions of the content, so an entry
// is never wrong, only possibly stale (its object collected): lookups
// check that the object is present, and GC removes stale entries.

func (s *Store) indexPath(sha SHA256) string {
	dir, name := fanout(sha)
	return filepath.Join(s.root, dirIndex, dir, name)
}

// indexSHA256 records sha -> d. An existing entry is left alone.
func (s *Store) indexSHA256(sha SHA256, d Digest) error {
	p := s.indexPath(sha)
	err := os.Symlink(d.String(), p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		err = os.Symlink(d.String(), p)
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// LookupSHA256 returns the digest of the present object whose content has
// the plain SHA-256 sha, if the store has one.
func (s *Store) LookupSHA256(sha SHA256) (Digest, bool) {
	target, err := os.Readlink(s.indexPath(sha))
	if err != nil {
		return Digest{}, false
	}
	d, err := ParseDigest(target)
	if err != nil || !s.Has(d) {
		return Digest{}, false
	}
	return d, true
}
