package dedup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// staleTemp is the age after which a named temporary file in staging is
// removed by GC. Named temporary files exist only where O_TMPFILE is not
// supported; an unnamed one vanishes with its process.
const staleTemp = 24 * time.Hour

// GCReport describes one collection.
type GCReport struct {
	// Removed and RemovedBytes count the objects deleted.
	Removed      int
	RemovedBytes int64
	// Kept counts objects found live.
	Kept int
	// Layers is the number of layers whose refs were read.
	Layers int
	// Pending counts the ingests in flight whose pins were honoured;
	// StalePending the pending sets of dead processes, removed.
	Pending      int
	StalePending int
	// TornRemoved counts objects of dead sessions that did not hash to
	// their name (cut short by a machine crash under SyncBatch), removed.
	TornRemoved int
	// IndexRemoved counts SHA-256 index records dropped (stale or
	// duplicate).
	IndexRemoved int
	// TempRemoved counts leftover temporary files removed.
	TempRemoved int
}

// GC deletes exactly the objects that no registered layer references and
// no ingest in flight has pinned.
//
// It lists the objects without any lock, then takes the store lock
// exclusively, reads every refs file and every pending set, and deletes
// the listed objects found in none of them. Objects that appear after the
// listing are not candidates; an object pinned after the listing was
// pinned under the shared lock, so before GC's exclusive section began,
// and is seen there. A refs or pending file that cannot be read stops GC
// before anything is deleted.
func (s *Store) GC(ctx context.Context) (GCReport, error) {
	var rep GCReport
	var candidates []Digest
	err := s.walkObjects(ctx, func(d Digest, _ string) error {
		candidates = append(candidates, d)
		return nil
	}, nil)
	if err != nil {
		return rep, fmt.Errorf("dedup: gc: %w", err)
	}
	unlock, err := s.lockStore(ctx, unix.LOCK_EX)
	if err != nil {
		return rep, fmt.Errorf("dedup: gc: %w", err)
	}
	defer unlock()
	live, err := s.liveSet(&rep)
	if err != nil {
		return rep, fmt.Errorf("dedup: gc: %w", err)
	}
	present := make(map[Digest]bool, len(candidates)) // for the index
	for _, d := range candidates {
		if _, ok := live[d]; ok {
			rep.Kept++
			present[d] = true
			continue
		}
		present[d] = false
		p := s.Path(d)
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("dedup: gc: %w", err)
		}
		rep.Removed++
		rep.RemovedBytes += st.Size
	}
	if err := s.compactIndex(&rep, present); err != nil {
		return rep, fmt.Errorf("dedup: gc: %w", err)
	}
	if err := s.sweepTemps(&rep); err != nil {
		return rep, fmt.Errorf("dedup: gc: %w", err)
	}
	return rep, nil
}

// liveSet returns every digest referenced by a layer or pinned by a live
// ingest, and removes the pending files of dead processes. The caller
// holds the store lock exclusively.
func (s *Store) liveSet(rep *GCReport) (map[Digest]struct{}, error) {
	live := map[Digest]struct{}{}
	layers, err := s.Layers()
	if err != nil {
		return nil, err
	}
	for _, id := range layers {
		ds, err := s.Refs(id)
		if errors.Is(err, ErrNotFound) {
			continue // dropped meanwhile
		}
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			live[d] = struct{}{}
		}
		rep.Layers++
	}
	dir := filepath.Join(s.root, dirPending)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list pending: %w", err)
	}
	for _, e := range ents {
		recs, alive, torn, err := s.pendingSet(filepath.Join(dir, e.Name()))
		rep.TornRemoved += torn
		if err != nil {
			return nil, err
		}
		if !alive {
			rep.StalePending++
			continue
		}
		rep.Pending++
		for _, r := range recs {
			live[r.d] = struct{}{}
		}
	}
	return live, nil
}

// pendingSet reads the pending file p. If its session's process is alive
// (it holds the file's lock), it returns the records. Otherwise the
// session is dead: the objects it created are rehashed and deleted if
// torn (SyncBatch does not sync them before a commit, so a machine crash
// may have cut them short), the file is removed, and alive is false. The
// caller holds the store lock exclusively.
func (s *Store) pendingSet(p string) (recs []pendingRec, alive bool, torn int, err error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, 0, nil // ended meanwhile
	}
	if err != nil {
		return nil, false, 0, fmt.Errorf("pending %s: %w", p, err)
	}
	defer f.Close()
	alive = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, false, 0, fmt.Errorf("pending %s: %w", p, err)
	}
	recs, err = readPending(data)
	if err != nil {
		return nil, false, 0, fmt.Errorf("pending %s: %w", p, err)
	}
	if alive {
		return recs, true, 0, nil
	}
	for _, r := range recs {
		if r.created && s.isTorn(r.d) {
			if err := os.Remove(s.Path(r.d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, false, torn, fmt.Errorf("remove torn object %s: %w", r.d, err)
			}
			torn++
		}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, torn, fmt.Errorf("remove stale pending %s: %w", p, err)
	}
	return nil, false, torn, nil
}

// isTorn reports whether the object named d exists and does not hash to
// its name.
func (s *Store) isTorn(d Digest) bool {
	f, err := os.Open(s.Path(d))
	if err != nil {
		return false
	}
	defer f.Close()
	got, _, err := fsverity.Digest(f)
	return err == nil && Digest(got) != d
}

// recoverDead reaps the pending files of dead sessions (see pendingSet)
// under the exclusive store lock. Open calls it, so that after a machine
// crash no torn object is found by an insert before GC runs.
func (s *Store) recoverDead(ctx context.Context) (stale, torn int, err error) {
	dir := filepath.Join(s.root, dirPending)
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return 0, 0, err
	}
	unlock, err := s.lockStore(ctx, unix.LOCK_EX)
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	for _, e := range ents {
		_, alive, n, err := s.pendingSet(filepath.Join(dir, e.Name()))
		if err != nil {
			return stale, torn, err
		}
		if !alive {
			stale++
		}
		torn += n
	}
	return stale, torn, nil
}

// sweepTemps removes leftover temporary refs files (written only under
// the shared lock, so none is in flight now) and named staging files
// older than staleTemp.
func (s *Store) sweepTemps(rep *GCReport) error {
	refs := filepath.Join(s.root, dirRefs)
	ents, err := os.ReadDir(refs)
	if err != nil {
		return fmt.Errorf("list refs: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") && os.Remove(filepath.Join(refs, e.Name())) == nil {
			rep.TempRemoved++
		}
	}
	staging := filepath.Join(s.root, dirStaging)
	ents, err = os.ReadDir(staging)
	if err != nil {
		return fmt.Errorf("list staging: %w", err)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err == nil && time.Since(fi.ModTime()) > staleTemp && os.Remove(filepath.Join(staging, e.Name())) == nil {
			rep.TempRemoved++
		}
	}
	return nil
}
