package fsverity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is returned (wrapping the kernel's errno) by Enable and
// Measure where the kernel or the filesystem lacks fs-verity: EOPNOTSUPP,
// ENOTTY or ENOPKG (no SHA-256 in the kernel's crypto API).
var ErrNotSupported = errors.New("fsverity: not supported by the kernel or filesystem")

// ErrNotEnabled is returned (wrapping ENODATA) by Measure for a file on
// which fs-verity is supported but not enabled.
var ErrNotEnabled = errors.New("fsverity: not enabled on file")

// measureBufSize is struct fsverity_digest: __u16 digest_algorithm,
// __u16 digest_size, then the digest (room for the largest, SHA-512).
const measureBufSize = 4 + 64

// Enable turns fs-verity on for the open file fd, with SHA-256, 4096-byte
// blocks and no salt, so that the kernel's measurement equals Digest's.
// The file must be open read-only with no writers. A file that already
// has fs-verity (EEXIST) is not an error.
func Enable(fd uintptr) error {
	arg := unix.FsverityEnableArg{
		Version:        1,
		Hash_algorithm: unix.FS_VERITY_HASH_ALG_SHA256,
		Block_size:     BlockSize,
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.FS_IOC_ENABLE_VERITY, uintptr(unsafe.Pointer(&arg)))
		switch errno {
		case 0, unix.EEXIST:
			return nil
		case unix.EINTR:
			continue
		}
		return fmt.Errorf("fsverity: enable: %w", classify(errno))
	}
}

// Measure returns the fs-verity digest the kernel holds for the open file
// fd. It fails with ErrNotEnabled where fs-verity is off for the file and
// with ErrNotSupported where the kernel or filesystem lacks it.
func Measure(fd uintptr) ([Size]byte, error) {
	var d [Size]byte
	var buf [measureBufSize]byte
	binary.NativeEndian.PutUint16(buf[2:], uint16(measureBufSize-4))
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.FS_IOC_MEASURE_VERITY, uintptr(unsafe.Pointer(&buf[0])))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return d, fmt.Errorf("fsverity: measure: %w", classify(errno))
		}
		break
	}
	alg := binary.NativeEndian.Uint16(buf[0:])
	size := binary.NativeEndian.Uint16(buf[2:])
	if alg != unix.FS_VERITY_HASH_ALG_SHA256 || size != Size {
		return d, fmt.Errorf("fsverity: measure: file uses hash algorithm %d (%d bytes), want SHA-256", alg, size)
	}
	copy(d[:], buf[4:4+Size])
	return d, nil
}

// classify wraps errno in ErrNotSupported or ErrNotEnabled where it means
// one of those, and returns it unchanged otherwise.
func classify(errno unix.Errno) error {
	switch errno {
	case unix.EOPNOTSUPP, unix.ENOTTY, unix.ENOPKG:
		return fmt.Errorf("%w: %w", ErrNotSupported, errno)
	case unix.ENODATA:
		return fmt.Errorf("%w: %w", ErrNotEnabled, errno)
	}
	return errno
}
