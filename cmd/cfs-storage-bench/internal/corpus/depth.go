package corpus

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// DepthLayers returns the layer tars of a synthetic image of n layers,
// bottom first, built in a temporary folder under tmp: the first layer
// holds /bin/true with its libraries; each further layer adds a small
// file, replaces /etc/depth and deletes the file added two layers
// below. The image of depth d is the first d layers.
func DepthLayers(ctx context.Context, tmp string, n int) ([][]byte, error) {
	progs, err := programFiles(ctx, "/bin/true")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tmp, "depth-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	if err := makeRoot(root, progs, map[string]string{"etc/depth": "0\n"}); err != nil {
		return nil, fmt.Errorf("depth image: %w", err)
	}
	prev := snapshot{}
	var out [][]byte
	for i := range n {
		if i > 0 {
			files := map[string]string{
				fmt.Sprintf("layers/l%03d", i): fmt.Sprintf("layer %d %s\n", i, bytes.Repeat([]byte{'x'}, 100+i*37)),
				"etc/depth":                    fmt.Sprintf("%d\n", i),
			}
			if err := writeFiles(root, files); err != nil {
				return nil, err
			}
			if i >= 2 {
				if err := removePaths(root, fmt.Sprintf("layers/l%03d", i-2)); err != nil {
					return nil, err
				}
			}
		}
		snap, err := scan(root)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := (layerWriter{root: root, snap: snap, epoch: epoch}).write(&buf, diff(prev, snap)); err != nil {
			return nil, fmt.Errorf("depth layer %d: %w", i, err)
		}
		out, prev = append(out, buf.Bytes()), snap
	}
	return out, nil
}
