package dedup

import (
	"errors"
	"fmt"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// probeVerity decides whether new objects get fs-verity: it enables it on
// a scratch temporary file in staging (the same file system as the
// objects). With VerityRequire an unsupported file system is an error.
func (s *Store) probeVerity() error {
	if s.opts.Verity == VerityOff {
		return nil
	}
	t, err := s.writeTemp([]byte("fs-verity probe"))
	if err != nil {
		return fmt.Errorf("fs-verity probe: %w", err)
	}
	defer t.discard()
	err = t.enableVerity()
	switch {
	case err == nil:
		s.verity = true
		return nil
	case errors.Is(err, fsverity.ErrNotSupported) && s.opts.Verity == VerityAuto:
		return nil
	case errors.Is(err, fsverity.ErrNotSupported):
		return fmt.Errorf("%w: %s: %w", ErrVerityUnsupported, s.root, err)
	}
	return fmt.Errorf("fs-verity probe: %w", err)
}
