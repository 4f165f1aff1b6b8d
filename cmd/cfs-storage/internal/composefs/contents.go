package composefs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/layers"
)

// digestStore copies contents into dir/xx/<62 hex>, as mkcomposefs
// --digest-store does.
type digestStore struct{ dir string }

// Put implements layers.Contents.
func (s digestStore) Put(_ context.Context, r io.Reader, size int64) (layers.Object, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return layers.Object{}, err
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-")
	if err != nil {
		return layers.Object{}, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := fsverity.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, size))
	if err != nil {
		return layers.Object{}, err
	}
	if n != size {
		return layers.Object{}, fmt.Errorf("read %d of %d bytes", n, size)
	}
	obj := object(h.Sum32())
	final := filepath.Join(s.dir, obj.Payload)
	if _, err := os.Stat(final); err == nil {
		return obj, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return layers.Object{}, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return layers.Object{}, err
	}
	if err := tmp.Close(); err != nil {
		return layers.Object{}, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return layers.Object{}, err
	}
	return obj, nil
}

func object(d [fsverity.Size]byte) layers.Object {
	return layers.Object{Payload: dedup.ObjectPath(d), Digest: d}
}
