package dedup

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The store lock (the file "lock" under the root) orders ingestion against
// garbage collection across processes. Every step that makes an object
// live (recording it in a pending set, writing a refs file) holds it
// shared, briefly; GC holds it exclusive while it reads the live set and
// deletes. Each acquisition opens its own descriptor, because flock locks
// belong to the open file description: two goroutines sharing one would
// convert each other's locks instead of excluding each other.

// lockPoll is the interval between attempts while a lock is busy.
const lockPoll = 2 * time.Millisecond

// flockCtx takes an flock of kind how (unix.LOCK_SH or unix.LOCK_EX) on
// fd, retrying until it succeeds or ctx is done.
func flockCtx(ctx context.Context, fd int, how int) error {
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}

// lockStore takes the store lock (shared or exclusive) and returns its
// release function.
func (s *Store) lockStore(ctx context.Context, how int) (func(), error) {
	p := filepath.Join(s.root, fileLock)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("store lock: %w", err)
	}
	if err := flockCtx(ctx, fd, how); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("store lock: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}
