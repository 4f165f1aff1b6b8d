package driver

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/hostlink"
)

// hostShare finds contents in the host's ostree repository so that
// ingestion links the host's object instead of writing the bytes again.
// The index is built on first use (a stat pass over the host objects),
// not at Init: most commands never ingest.
type hostShare struct {
	repoPath string
	cacheDir string
	minSize  int64
	mode     dedup.LinkMode

	once  sync.Once
	index *hostlink.Index
	err   error
}

func newHostShare(home string, opts Options) *hostShare {
	if opts.HostRepo == "" || opts.HostLink == "off" {
		return nil
	}
	mode := map[string]dedup.LinkMode{"auto": dedup.LinkAuto, "hardlink": dedup.LinkHardlink, "reflink": dedup.LinkReflink, "copy": dedup.LinkCopy}[opts.HostLink]
	return &hostShare{repoPath: opts.HostRepo, cacheDir: filepath.Join(home, "hostlink"), minSize: opts.InlineThreshold + 1, mode: mode}
}

// open builds the index once.
func (h *hostShare) open(ctx context.Context) (*hostlink.Index, error) {
	h.once.Do(func() {
		repo, err := hostlink.OpenRepo(h.repoPath)
		if err != nil {
			h.err = fmt.Errorf("cfs: host repository %s (option host_repo): %w", h.repoPath, err)
			return
		}
		h.index, err = hostlink.NewIndex(ctx, repo, hostlink.IndexOptions{
			CacheDir: h.cacheDir,
			Hash:     fsverityDigest,
			HashName: "fsverity-sha256",
			MinSize:  h.minSize,
		})
		if err != nil {
			h.err = fmt.Errorf("cfs: index host repository %s: %w", h.repoPath, err)
		}
	})
	return h.index, h.err
}

func fsverityDigest(r io.Reader) ([32]byte, error) {
	d, _, err := fsverity.Digest(r)
	return d, err
}

// insertOptions are the dedup options for ingesting a content: with a
// host repository, an Alternate that finds the content among the host's
// objects.
func (h *hostShare) insertOptions(ctx context.Context) (dedup.InsertOptions, error) {
	if h == nil {
		return dedup.InsertOptions{}, nil
	}
	index, err := h.open(ctx)
	if err != nil {
		return dedup.InsertOptions{}, err
	}
	return dedup.InsertOptions{
		AlternateMode: h.mode,
		Alternate: func(ctx context.Context, d dedup.Digest, size int64) (string, func(), bool) {
			p, ok, err := index.Lookup(ctx, size, d)
			return p, nil, err == nil && ok
		},
	}, nil
}

func (h *hostShare) close() error {
	if h == nil || h.index == nil {
		return nil
	}
	return h.index.Close()
}
