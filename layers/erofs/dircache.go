package erofs

import (
	"slices"
	"strings"
	"sync"
)

// dirCacheLimit bounds the memory of an Image's decoded-directory cache.
const dirCacheLimit = 64 << 20

// dirCache keeps decoded directories of an Image by nid, so that path
// lookups through the fs.FS view cost a binary search instead of decoding
// the directory again: walking a hostile image stays near-linear. It is
// safe for concurrent use and cleared when it outgrows dirCacheLimit.
type dirCache struct {
	mu    sync.Mutex
	dirs  map[uint64]dirResult
	bytes int64
}

type dirResult struct {
	ents []rawDirent // sorted by name
	err  error
}

// sortedDir returns directory ri's entries sorted by name ("." and ".."
// included), decoding them once.
func (img *Image) sortedDir(ri *rawInode) ([]rawDirent, error) {
	c := img.cache
	c.mu.Lock()
	r, ok := c.dirs[ri.nid]
	c.mu.Unlock()
	if ok {
		return r.ents, r.err
	}
	ents, err := img.readDir(ri)
	if err == nil && !slices.IsSortedFunc(ents, cmpDirent) {
		slices.SortStableFunc(ents, cmpDirent)
	}
	cost := int64(64)
	for _, e := range ents {
		cost += 40 + int64(len(e.name))
	}
	c.mu.Lock()
	if c.dirs == nil || c.bytes+cost > dirCacheLimit {
		c.dirs, c.bytes = make(map[uint64]dirResult), 0
	}
	c.dirs[ri.nid] = dirResult{ents: ents, err: err}
	c.bytes += cost
	c.mu.Unlock()
	return ents, err
}

func cmpDirent(a, b rawDirent) int { return strings.Compare(a.name, b.name) }
