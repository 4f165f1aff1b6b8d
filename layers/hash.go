package layers

import (
	"context"
	"fmt"
	"io"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// HashContents names contents by their fs-verity digest without storing
// them, at the path the object store gives them (dedup.ObjectPath): for
// trees that are only compared (the driver's Changes) or whose objects
// are not kept (mkcomposefs without --digest-store).
type HashContents struct{}

// Put implements Contents.
func (HashContents) Put(_ context.Context, r io.Reader, size int64) (Object, error) {
	sum, n, err := fsverity.Digest(io.LimitReader(r, size))
	if err != nil {
		return Object{}, err
	}
	if n != size {
		return Object{}, fmt.Errorf("layers: content is %d bytes, the entry says %d", n, size)
	}
	return Object{Payload: dedup.ObjectPath(sum), Digest: sum}, nil
}
