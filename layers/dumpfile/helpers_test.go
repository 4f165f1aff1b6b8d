package dumpfile

import (
	"os"
	"path/filepath"
)

type namedFile struct {
	name string
	data []byte
}

func filepathGlob(dir, pattern string) ([]namedFile, error) {
	paths, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		return nil, err
	}
	var out []namedFile
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, namedFile{filepath.Base(p), data})
	}
	return out, nil
}
