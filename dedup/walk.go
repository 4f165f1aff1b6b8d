package dedup

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// walkObjects calls fn for every well-named entry under objects/ (two hex
// digits, then 62), and stray, if not nil, for every other entry. It
// stops at the first error either returns.
func (s *Store) walkObjects(ctx context.Context, fn func(d Digest, path string) error, stray func(path string) error) error {
	top := filepath.Join(s.root, dirObjects)
	dirs, err := os.ReadDir(top)
	if err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	for _, de := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		dp := filepath.Join(top, de.Name())
		var prefix [1]byte
		if len(de.Name()) != 2 || !de.IsDir() || decodeHex(prefix[:], de.Name()) != nil {
			if stray != nil {
				if err := stray(dp); err != nil {
					return err
				}
			}
			continue
		}
		ents, err := os.ReadDir(dp)
		if err != nil {
			return fmt.Errorf("list objects: %w", err)
		}
		for _, e := range ents {
			var d Digest
			d[0] = prefix[0]
			p := filepath.Join(dp, e.Name())
			if len(e.Name()) != 62 || !e.Type().IsRegular() || decodeHex(d[1:], e.Name()) != nil {
				if stray != nil {
					if err := stray(p); err != nil {
						return err
					}
				}
				continue
			}
			if err := fn(d, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeHex decodes lower-case hex s into dst, which must have the exact
// length. Upper-case digits are refused, since names are canonical.
func decodeHex(dst []byte, s string) error {
	for _, c := range []byte(s) {
		if c >= 'A' && c <= 'F' {
			return hex.InvalidByteError(c)
		}
	}
	if hex.DecodedLen(len(s)) != len(dst) {
		return hex.ErrLength
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}
