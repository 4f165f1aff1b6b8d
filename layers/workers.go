package layers

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// putPool stores buffered contents on worker goroutines while the tar
// stream goes on being read: hashing, host lookups and writes of one file
// overlap with decompressing the next. At most workers contents are
// buffered at once, so memory stays bounded by workers × the buffer limit.
type putPool struct {
	contents Contents
	jobs     chan putJob
	wg       sync.WaitGroup

	mu  sync.Mutex
	err error
}

type putJob struct {
	n    *tree.Node
	name string // the entry's name, for errors
	data []byte
}

func newPutPool(ctx context.Context, contents Contents, workers int) *putPool {
	p := &putPool{contents: contents, jobs: make(chan putJob, workers)}
	for i := 0; i < workers; i++ {
		p.wg.Add(1)
		go p.work(ctx)
	}
	return p
}

func (p *putPool) work(ctx context.Context) {
	defer p.wg.Done()
	for j := range p.jobs {
		if p.failed() {
			continue
		}
		obj, err := p.contents.Put(ctx, bytes.NewReader(j.data), int64(len(j.data)))
		if err != nil {
			p.fail(fmt.Errorf("entry %q: store content (%d bytes): %w", j.name, len(j.data), err))
			continue
		}
		d := obj.Digest
		j.n.Payload, j.n.Digest = obj.Payload, &d
	}
}

// put queues data as n's content; it blocks while every worker is busy.
func (p *putPool) put(n *tree.Node, name string, data []byte) error {
	if err := p.firstErr(); err != nil {
		return err
	}
	p.jobs <- putJob{n: n, name: name, data: data}
	return nil
}

// wait stops taking work, waits for the queued contents and returns the
// first error.
func (p *putPool) wait() error {
	close(p.jobs)
	p.wg.Wait()
	return p.firstErr()
}

func (p *putPool) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

func (p *putPool) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *putPool) failed() bool { return p.firstErr() != nil }
