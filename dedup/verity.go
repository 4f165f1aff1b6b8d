package dedup

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// probeVerity decides whether new objects get fs-verity: it enables it on
// a scratch temporary file in staging (the same file system as the
// objects). With VerityRequire an unsupported file system is an error.
func (s *Store) probeVerity() error {
	if s.opts.Verity == VerityNone {
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

// checkVerity checks an open object with the kernel's fs-verity, when the
// object has it: the digest the kernel measures (FS_IOC_MEASURE_VERITY)
// must be the object's name, and reading the whole file through the
// kernel, which checks every block against the measured Merkle tree
// (EIO on a block that does not match), replaces rehashing it in user
// space. It reports whether the kernel checked the object (false: fall
// back to rehashing), the bytes read, and what is wrong ("" if nothing).
//
// An object without fs-verity in a store that requires it is reported:
// overlay mounts with verity=require refuse to open it (EIO).
func (s *Store) checkVerity(f *os.File, d Digest) (bool, int64, string) {
	m, err := fsverity.Measure(f.Fd())
	switch {
	case errors.Is(err, fsverity.ErrNotEnabled) && s.opts.Verity == VerityRequire:
		return true, 0, "fs-verity is not enabled on it, which verity=require needs (containers get EIO opening it)"
	case err != nil:
		return false, 0, ""
	case Digest(m) != d:
		var st unix.Stat_t
		unix.Fstat(int(f.Fd()), &st)
		return true, st.Size, fmt.Sprintf("kernel fs-verity measures %s", Digest(m))
	}
	buf := make([]byte, 16*fsverity.BlockSize)
	n, err := io.CopyBuffer(io.Discard, f, buf)
	if err != nil {
		return true, n, fmt.Sprintf("unreadable: %v (the kernel's fs-verity check of the blocks at %d)", err, n)
	}
	return true, n, ""
}
