package erofs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// FuzzOpen feeds arbitrary bytes to the reader: Open, the composefs tree
// view and a walk of the fs.FS view reading every file. Errors are fine;
// panics, hangs and huge allocations are bugs. Seeds are the images of the
// small corpus dumps and of the spec examples.
func FuzzOpen(f *testing.F) {
	for _, c := range corpusCases(f) {
		if c.sha256 == "" {
			continue
		}
		dump := testutil.ReadCorpusFile(f, c.path)
		if len(dump) > 64<<10 {
			continue
		}
		if img, _, err := buildImage(dump, c.strict, c.options()); err == nil {
			f.Add(img)
		}
	}
	for _, ex := range specExamples() {
		if img, _, err := buildImage([]byte(ex.dump), true, ex.opts); err == nil && len(img) <= 32<<10 {
			f.Add(img)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		_, _ = im.Tree()
		walkAll(im)
	})
}

// walkAll reads everything reachable in the image's fs.FS view, ignoring
// errors.
func walkAll(fsys *Image) {
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if _, err := d.Info(); err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if f, err := fsys.Open(p); err == nil {
				_, _ = io.Copy(io.Discard, f)
				_ = f.Close()
			}
		}
		if d.Type()&fs.ModeSymlink != 0 {
			_, _ = fsys.ReadLink(p)
		}
		_, _ = fsys.Xattrs(p)
		return nil
	})
}

// TestCorruptImages checks that truncated and bit-flipped images give
// errors, never panics (a fixed sample of what FuzzOpen explores).
func TestCorruptImages(t *testing.T) {
	img := writeImage(t, sampleTree(t), DefaultOptions())
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"header only", img[:1024], ErrCorrupt},
		{"bad magic", append([]byte{0}, img[1:]...), ErrCorrupt},
		{"truncated", img[:8192], ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			im, err := Open(bytes.NewReader(tc.data), int64(len(tc.data)))
			if err == nil {
				_, err = im.Tree()
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Every 13th byte of the metadata area, a sample of the data blocks.
	for off := 0; off < len(img); off += map[bool]int{true: 13, false: 211}[off < 12288] {
		mut := bytes.Clone(img)
		mut[off] ^= 0xA5
		im, err := Open(bytes.NewReader(mut), int64(len(mut)))
		if err != nil {
			continue
		}
		_, _ = im.Tree()
		walkAll(im)
	}
}
