package dedup

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// holeBlock is the unit of all-zero data left as a hole: the page and
// fs-verity block size, and the allocation unit of the usual file systems.
const holeBlock = 4096

var zeroBlock [holeBlock]byte

// sparseWriter writes a content to a new, empty file sequentially and
// leaves aligned all-zero blocks as holes: a sparse layer file (an 8 GiB
// disk image of 244 gzip bytes) stays sparse in the store. Reading the
// file gives the same bytes, so its fs-verity digest is the same. Call
// finish to give the file its full size when it ends in a hole.
type sparseWriter struct {
	f   *os.File
	off int64 // bytes written or skipped
	end int64 // bytes written for real
}

// Write implements io.Writer. Data between holes goes out in one write.
func (w *sparseWriter) Write(p []byte) (int, error) {
	runStart, run := w.off, 0 // pending data: p[written:written+run] at runStart
	written := 0
	flush := func() error {
		if run == 0 {
			return nil
		}
		if _, err := w.f.WriteAt(p[written:written+run], runStart); err != nil {
			return err
		}
		w.end = runStart + int64(run)
		written += run
		run = 0
		return nil
	}
	for i := 0; i < len(p); {
		// Up to the next block boundary, so that holes stay aligned.
		size := min(holeBlock-int(w.off%holeBlock), len(p)-i)
		if size == holeBlock && bytes.Equal(p[i:i+size], zeroBlock[:]) {
			if err := flush(); err != nil {
				return written, err
			}
			written += size // skipped
			runStart = w.off + holeBlock
		} else {
			run += size
		}
		w.off += int64(size)
		i += size
	}
	if err := flush(); err != nil {
		return written, err
	}
	return len(p), nil
}

// finish extends the file over a trailing hole.
func (w *sparseWriter) finish() error {
	if w.off > w.end {
		if err := w.f.Truncate(w.off); err != nil {
			return fmt.Errorf("extend over a trailing hole: %w", err)
		}
	}
	// Leave the offset at the end, as sequential writes would have.
	_, err := w.f.Seek(w.off, io.SeekStart)
	return err
}
