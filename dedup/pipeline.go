package dedup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
)

// copyHashing hashes first and then the rest of r, writing every byte to
// w as well unless w is nil. first and spare are two buffers of the same
// size; first holds the data already read.
//
// Where the plain SHA-256 is wanted and more than one CPU is available,
// it runs in a second goroutine one chunk behind, while this goroutine
// computes the fs-verity digest and writes: the two SHA-256 passes over
// the content then take about the time of one.
func (h *hashers) copyHashing(ctx context.Context, w io.Writer, first, spare []byte, r io.Reader) error {
	var sha chan []byte
	acks := make(chan struct{}, 2)
	done := make(chan struct{})
	if h.sha != nil && runtime.GOMAXPROCS(0) > 1 {
		sha = make(chan []byte, 1)
		go func() {
			defer close(done)
			for b := range sha {
				h.sha.Write(b)
				acks <- struct{}{}
			}
		}()
		defer func() { close(sha); <-done }()
	}
	bufs := [2][]byte{first, spare}
	chunk, cur, inflight := first, 0, 0
	for {
		if len(chunk) > 0 {
			if sha != nil {
				sha <- chunk
				inflight++
			} else if h.sha != nil {
				h.sha.Write(chunk)
			}
			h.verity.Write(chunk)
			h.size += int64(len(chunk))
			if w != nil {
				if _, err := w.Write(chunk); err != nil {
					return fmt.Errorf("write: %w", err)
				}
			}
		}
		if len(chunk) < len(bufs[cur]) {
			return nil // short read: that was the end
		}
		cur ^= 1
		if inflight == 2 {
			<-acks // the SHA-256 goroutine is done with bufs[cur]
			inflight--
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, bufs[cur])
		chunk = bufs[cur][:n]
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read: %w", err)
		}
		if err != nil && n == 0 {
			return nil
		}
	}
}
