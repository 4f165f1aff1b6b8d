package dedup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// FsckOptions tune Fsck.
type FsckOptions struct {
	// Sample is the fraction of objects whose content is rehashed, in
	// (0, 1); 0 (or 1 and above) rehashes every object. Which objects
	// are sampled depends on Seed.
	Sample float64
	Seed   uint64
	// Repair moves corrupt objects to quarantine/, so that the next
	// insert of that content writes a good copy.
	Repair bool
	// Workers hash in parallel; 0 means GOMAXPROCS.
	Workers int
}

// Problem is one corrupt or missing object.
type Problem struct {
	Digest Digest
	// Layers are the layers whose refs name the object, sorted.
	Layers []string
	// Detail says what is wrong.
	Detail string
}

// FsckReport is the outcome of Fsck.
type FsckReport struct {
	// Objects counts the well-named objects found; Checked those
	// rehashed, CheckedBytes their size.
	Objects      int
	Checked      int
	CheckedBytes int64
	// Corrupt objects do not hash to their name (or cannot be read).
	Corrupt []Problem
	// Missing objects are named by some layer's refs but absent.
	Missing []Problem
	// Stray lists unexpected entries under objects/ (bad names, not
	// regular files). They are reported, never removed.
	Stray []string
	// BadRefs lists layers whose refs file is damaged.
	BadRefs []string
	// Quarantined lists where Repair moved corrupt objects.
	Quarantined []string
}

// Clean reports whether fsck found nothing wrong.
func (r *FsckReport) Clean() bool {
	return len(r.Corrupt) == 0 && len(r.Missing) == 0 && len(r.Stray) == 0 && len(r.BadRefs) == 0
}

// Fsck recomputes the fs-verity digest of every object (or a sample),
// and checks that every object a layer references is present. An object
// with fs-verity is measured by the kernel and read through its block
// checks instead of rehashed (see checkVerity). It runs
// alongside ingestion and GC; an object collected while fsck runs is not
// reported.
func (s *Store) Fsck(ctx context.Context, opts FsckOptions) (FsckReport, error) {
	var rep FsckReport
	users, err := s.usersByDigest(&rep)
	if err != nil {
		return rep, fmt.Errorf("dedup: fsck: %w", err)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	var todo []Digest
	err = s.walkObjects(ctx, func(d Digest, _ string) error {
		rep.Objects++
		if opts.Sample <= 0 || opts.Sample >= 1 || rng.Float64() < opts.Sample {
			todo = append(todo, d)
		}
		return nil
	}, func(p string) error {
		rep.Stray = append(rep.Stray, p)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("dedup: fsck: %w", err)
	}
	s.hashAll(ctx, todo, opts.Workers, &rep, users)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("dedup: fsck: %w", err)
	}
	if err := s.findMissing(users, &rep); err != nil {
		return rep, fmt.Errorf("dedup: fsck: %w", err)
	}
	sortProblems(rep.Corrupt)
	if opts.Repair && len(rep.Corrupt) > 0 {
		if err := s.quarantine(ctx, &rep); err != nil {
			return rep, fmt.Errorf("dedup: fsck: %w", err)
		}
	}
	return rep, nil
}

// findMissing reports referenced objects that are absent. Candidates are
// confirmed against a fresh read of the refs, so that a layer dropped and
// collected while fsck ran is not reported.
func (s *Store) findMissing(users map[Digest][]string, rep *FsckReport) error {
	var absent []Digest
	for d := range users {
		if !s.Has(d) {
			absent = append(absent, d)
		}
	}
	if len(absent) == 0 {
		return nil
	}
	var scratch FsckReport
	fresh, err := s.usersByDigest(&scratch)
	if err != nil {
		return err
	}
	for _, d := range absent {
		if layers, ok := fresh[d]; ok && !s.Has(d) {
			rep.Missing = append(rep.Missing, Problem{Digest: d, Layers: layers, Detail: "absent"})
		}
	}
	sortProblems(rep.Missing)
	return nil
}

func sortProblems(ps []Problem) {
	slices.SortFunc(ps, func(a, b Problem) int { return compareDigest(a.Digest, b.Digest) })
}

// usersByDigest maps every referenced digest to the layers using it.
func (s *Store) usersByDigest(rep *FsckReport) (map[Digest][]string, error) {
	layers, err := s.Layers()
	if err != nil {
		return nil, err
	}
	users := map[Digest][]string{}
	for _, id := range layers {
		ds, err := s.Refs(id)
		if errors.Is(err, ErrCorruptRefs) {
			rep.BadRefs = append(rep.BadRefs, id)
			continue
		}
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			users[d] = append(users[d], id)
		}
	}
	return users, nil
}

// hashAll rehashes the objects in todo with parallel workers and records
// the corrupt ones in rep.
func (s *Store) hashAll(ctx context.Context, todo []Digest, workers int, rep *FsckReport, users map[Digest][]string) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan Digest)
	for range workers {
		wg.Go(func() {
			for d := range next {
				size, detail := s.checkObject(d)
				mu.Lock()
				if size >= 0 {
					rep.Checked++
					rep.CheckedBytes += size
				}
				if detail != "" {
					rep.Corrupt = append(rep.Corrupt, Problem{Digest: d, Layers: users[d], Detail: detail})
				}
				mu.Unlock()
			}
		})
	}
	for _, d := range todo {
		if ctx.Err() != nil {
			break
		}
		next <- d
	}
	close(next)
	wg.Wait()
}

// checkObject rehashes one object. It returns the size hashed (-1 if the
// object vanished, as GC may make it) and what is wrong ("" if nothing).
func (s *Store) checkObject(d Digest) (int64, string) {
	f, err := os.Open(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return -1, ""
	}
	if err != nil {
		return 0, fmt.Sprintf("unreadable: %v", err)
	}
	defer f.Close()
	if checked, n, detail := s.checkVerity(f, d); checked {
		return n, detail
	}
	got, n, err := fsverity.Digest(f)
	if err != nil {
		return n, fmt.Sprintf("unreadable: %v", err)
	}
	if Digest(got) != d {
		return n, fmt.Sprintf("content hashes to %s", Digest(got))
	}
	return n, ""
}

// quarantine moves the corrupt objects to quarantine/<digest>.<time>,
// under the exclusive store lock so that no insert is deciding, at that
// moment, that the object exists.
func (s *Store) quarantine(ctx context.Context, rep *FsckReport) error {
	unlock, err := s.lockStore(ctx, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	stamp := strconv.FormatInt(time.Now().UnixNano(), 10)
	for _, p := range rep.Corrupt {
		dst := filepath.Join(s.root, dirQuarantine, p.Digest.String()+"."+stamp)
		err := os.Rename(s.Path(p.Digest), dst)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("quarantine %s: %w", p.Digest, err)
		}
		rep.Quarantined = append(rep.Quarantined, dst)
	}
	return s.syncDir(filepath.Join(s.root, dirQuarantine))
}
