package hostlink

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// objectStat is what the cheap pass learns of one file object.
type objectStat struct {
	sum   checksum
	size  int64
	mtime int64 // ns since the epoch
}

// dirScan is the cheap pass's result for one objects/xx directory,
// remembered (see scanState) so that a later pass can skip a directory
// that did not change, or stat only the names it did not know.
type dirScan struct {
	mtime int64 // the directory's mtime (ns) when listed
	ino   uint64
	objs  []objectStat
}

// scanState is the remembered result of a cheap pass: per objects/xx
// directory, its mtime and inode when listed and its file objects.
type scanState struct {
	dev, ino uint64 // identify the objects directory
	dirs     map[string]*dirScan
}

// scanCounts tell how much work a pass did (for stats and tests).
type scanCounts struct {
	dirsListed int // directories read with getdents
	statted    int // objects stat'ed (names not known from before)
}

// fileSuffix is the name suffix of file objects in bare repositories.
const fileSuffix = ".file"

// racyWindow: a directory modified this close to the previous pass may
// have changed again within the same timestamp tick, so its mtime does
// not prove it unchanged (git's "racy" problem); it is listed again.
const racyWindow = 2 * time.Second

// scanFileObjects is the index's cheap pass: it lists objects/xx/ and
// stats every *.file entry that is a regular file; no file is opened.
// With prev (a remembered earlier pass of the same directory, may be
// nil), a directory whose mtime and inode did not change is not listed
// again, and in a changed one only new names are stat'ed: object names
// are content-addressed, so a known name is a known object. Directories
// are scanned in parallel. Symlink objects (bare, bare-user-only) are
// skipped; bare-user symlinks, stored as regular files, are sorted out
// when hashed.
func scanFileObjects(ctx context.Context, objectsDir string, prev *scanState) (*scanState, scanCounts, error) {
	var counts scanCounts
	var st unix.Stat_t
	if err := unix.Stat(objectsDir, &st); err != nil {
		return nil, counts, fmt.Errorf("stat %s: %w", objectsDir, err)
	}
	next := &scanState{dev: st.Dev, ino: st.Ino, dirs: map[string]*dirScan{}}
	if prev == nil || prev.dev != st.Dev || prev.ino != st.Ino {
		prev = &scanState{dirs: map[string]*dirScan{}}
	}
	subdirs, err := os.ReadDir(objectsDir)
	if err != nil {
		return nil, counts, fmt.Errorf("listing %s: %w", objectsDir, err)
	}
	notAfter := time.Now().Add(-racyWindow).UnixNano()
	work := make(chan int)
	results := make([]*dirScan, len(subdirs))
	cnts := make([]scanCounts, len(subdirs))
	errs := make([]error, len(subdirs))
	var wg sync.WaitGroup
	for w := 0; w < 2*runtime.GOMAXPROCS(0); w++ { // stat-bound: overlap syscalls
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := subdirs[i].Name()
				results[i], cnts[i], errs[i] = scanSubdir(filepath.Join(objectsDir, name), name, prev.dirs[name], notAfter)
			}
		}()
	}
	for i, d := range subdirs {
		if ctx.Err() != nil {
			break
		}
		if n := d.Name(); d.IsDir() && len(n) == 2 && isHex(n) {
			work <- i
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, counts, err
	}
	for i, r := range results {
		if errs[i] != nil {
			return nil, counts, errs[i]
		}
		if r != nil {
			next.dirs[subdirs[i].Name()] = r
			counts.dirsListed += cnts[i].dirsListed
			counts.statted += cnts[i].statted
		}
	}
	return next, counts, nil
}

// objects returns every object of the pass.
func (s *scanState) objects() []objectStat {
	n := 0
	for _, d := range s.dirs {
		n += len(d.objs)
	}
	out := make([]objectStat, 0, n)
	for _, d := range s.dirs {
		out = append(out, d.objs...)
	}
	return out
}

// isHex reports whether s is lowercase hexadecimal.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// scanSubdir scans one objects/xx directory, reusing prev (its earlier
// pass, may be nil) as far as the directory's mtime allows.
func scanSubdir(dir, prefix string, prev *dirScan, notAfter int64) (*dirScan, scanCounts, error) {
	var counts scanCounts
	f, err := os.Open(dir)
	if err != nil {
		return nil, counts, fmt.Errorf("opening %s: %w", dir, err)
	}
	defer f.Close()
	var dst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &dst); err != nil {
		return nil, counts, fmt.Errorf("stat %s: %w", dir, err)
	}
	out := &dirScan{mtime: dst.Mtim.Nano(), ino: dst.Ino}
	if prev != nil && prev.mtime == out.mtime && prev.ino == out.ino && out.mtime < notAfter {
		out.objs = prev.objs
		return out, counts, nil
	}
	known := map[checksum]objectStat{}
	if prev != nil {
		for _, o := range prev.objs {
			known[o.sum] = o
		}
	}
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, counts, fmt.Errorf("listing %s: %w", dir, err)
	}
	counts.dirsListed++
	fd := int(f.Fd())
	out.objs = make([]objectStat, 0, len(ents))
	var hexName [64]byte
	copy(hexName[:2], prefix)
	for _, e := range ents {
		n := e.Name()
		if len(n) != 62+len(fileSuffix) || n[62:] != fileSuffix || !e.Type().IsRegular() && e.Type() != 0 {
			continue
		}
		copy(hexName[2:], n[:62])
		var o objectStat
		if _, err := hex.Decode(o.sum[:], hexName[:]); err != nil || !isHex(n[:62]) {
			continue
		}
		if k, ok := known[o.sum]; ok {
			out.objs = append(out.objs, k)
			continue
		}
		var st unix.Stat_t
		counts.statted++
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT { // pruned while we list
				continue
			}
			return nil, counts, fmt.Errorf("stat %s/%s: %w", dir, n, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		o.size, o.mtime = st.Size, st.Mtim.Nano()
		out.objs = append(out.objs, o)
	}
	return out, counts, nil
}
