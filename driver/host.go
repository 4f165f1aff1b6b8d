package driver

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/hostlink"
)

// hostShare finds contents in the host's ostree repository so that
// ingestion links the host's object instead of writing the bytes again.
// The index is built on first use (a stat pass over the host objects),
// not at Init: most commands never ingest.
//
// With host_link auto or hardlink, a found host object is first staged
// (hostlink.Stager): given a name in <home>/hostlink/staging that is the
// host inode, so that the store hard-links it within its own mount even
// when the host repository is on another mount of the filesystem (Fedora
// CoreOS: /sysroot read-only, /var a bind mount). Where it cannot be
// staged, auto hands dedup the host path (hard link, else reflink, else
// copy) and hardlink declines it (the streamed bytes are written).
// reflink and copy hand dedup the host path in that mode only; where a
// reflink is impossible (ext4, say) dedup writes the streamed bytes.
//
// Opening (the index, then the stager) is retried: after a failure,
// ingestion fails with the same error until retryAfter has passed, then
// the parts not open yet are opened again, so that a long-running daemon
// recovers once the host repository is fixed.
type hostShare struct {
	repoPath   string
	cacheDir   string
	stagingDir string
	minSize    int64
	linkName   string
	mode       dedup.LinkMode
	// retryAfter is how long a failure to open is returned before
	// opening is tried again.
	retryAfter time.Duration

	mu       sync.Mutex // guards index, stager, err and failedAt
	index    *hostlink.Index
	stager   *hostlink.Stager // nil unless mode is auto or hardlink
	err      error            // the last failure to open, nil once open
	failedAt time.Time        // when err happened
	// staged is stager, for status readers outside the ingest path.
	staged atomic.Pointer[hostlink.Stager]
}

// hostRetryAfter is hostShare.retryAfter.
const hostRetryAfter = 30 * time.Second

func newHostShare(home string, opts Options) *hostShare {
	if !opts.sharesHost() {
		return nil
	}
	return &hostShare{
		repoPath:   opts.HostRepo,
		cacheDir:   filepath.Join(home, "hostlink"),
		stagingDir: filepath.Join(home, "hostlink", "staging"),
		minSize:    opts.InlineThreshold + 1,
		linkName:   hostLinkName(opts.HostLink),
		mode:       opts.HostLink,
		retryAfter: hostRetryAfter,
	}
}

// open builds the index and, for a mode that wants hard links, the
// stager, on first use; after a failure it returns that failure until
// retryAfter has passed, then tries again.
func (h *hostShare) open(ctx context.Context) (*hostlink.Index, *hostlink.Stager, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil && time.Since(h.failedAt) < h.retryAfter {
		return nil, nil, h.err
	}
	h.err = nil
	if h.index == nil {
		index, err := h.openIndex(ctx)
		if err != nil {
			h.err, h.failedAt = err, time.Now()
			return nil, nil, err
		}
		h.index = index
	}
	if h.stager == nil && (h.mode == dedup.LinkAuto || h.mode == dedup.LinkHardlink) {
		stager, err := hostlink.NewStager(hostlink.StagerOptions{Dir: h.stagingDir, Repo: h.repoPath, Helper: stageHelperCommand})
		if err != nil {
			h.err, h.failedAt = fmt.Errorf("cfs: host link staging (option host_link=%s): %w", h.linkName, err), time.Now()
			return nil, nil, h.err
		}
		h.stager = stager
		h.staged.Store(stager)
	}
	return h.index, h.stager, nil
}

// openIndex opens the host repository and builds its content index.
func (h *hostShare) openIndex(ctx context.Context) (*hostlink.Index, error) {
	repo, err := hostlink.OpenRepo(h.repoPath)
	if err != nil {
		return nil, fmt.Errorf("cfs: host repository %s (option host_repo): %w", h.repoPath, err)
	}
	index, err := hostlink.NewIndex(ctx, repo, hostlink.IndexOptions{
		CacheDir: h.cacheDir,
		Hash:     fsverityDigest,
		HashName: "fsverity-sha256-only",
		MinSize:  h.minSize,
		// Ingestion looks contents up by fs-verity digest only; the
		// partial-pull repository's Contents adds the SHA-256 of each
		// host object once, when a partial pull first needs it.
		NoSHA256: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cfs: index host repository %s: %w", h.repoPath, err)
	}
	return index, nil
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
	index, stager, err := h.open(ctx)
	if err != nil {
		return dedup.InsertOptions{}, err
	}
	// The index proves a host object holds the content by its ostree
	// checksum, computed over the streamed bytes: dedup need not read it.
	alt := hostAlternate{index: index, stager: stager, mode: h.mode}
	return dedup.InsertOptions{AlternateMode: h.mode, Alternate: alt, TrustAlternate: true}, nil
}

// hostAlternate is the dedup Alternate of a host repository: the host
// object with the content, staged when the mode wants a hard link.
type hostAlternate struct {
	index  *hostlink.Index
	stager *hostlink.Stager // nil: hand dedup the host path
	mode   dedup.LinkMode
}

// Find looks the content up in the index; a failed lookup returns its
// error (dedup counts it and writes the stream). In hardlink mode a host
// object that cannot be staged is declined: no hard link is possible.
func (a hostAlternate) Find(ctx context.Context, d dedup.Digest, size int64, content io.ReaderAt) (dedup.Candidate, bool, error) {
	p, ok, err := a.index.LookupContent(ctx, size, d, content)
	if err != nil || !ok {
		return dedup.Candidate{}, false, err
	}
	if a.stager == nil {
		return dedup.Candidate{Path: p}, true, nil
	}
	staged, release, err := a.stager.Stage(ctx, p)
	switch {
	case err == nil:
		return dedup.Candidate{Path: staged, Release: release}, true, nil
	case a.mode == dedup.LinkHardlink:
		return dedup.Candidate{}, false, nil // no hard link possible: write the stream
	default:
		return dedup.Candidate{Path: p}, true, nil // dedup tries a hard link, a reflink, a copy
	}
}

// pullSource lists the host repository's contents for the
// partial-pull repository.
func (h *hostShare) pullSource() pullSource {
	return func(ctx context.Context, add func([32]byte, string) error) error {
		index, _, err := h.open(ctx)
		if err != nil {
			return err
		}
		return index.Contents(ctx, func(p string, _ int64, sha [32]byte) error { return add(sha, p) })
	}
}

func (h *hostShare) close() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var err error
	if h.stager != nil {
		err = h.stager.Close()
	}
	if h.index != nil {
		if cerr := h.index.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
