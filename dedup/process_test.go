package dedup

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Child processes: the test binary re-executes itself with
// DEDUP_TEST_CHILD set to a role; TestMain runs that role instead of the
// tests. Children report on stdout, one line per event.
const (
	envChild = "DEDUP_TEST_CHILD"
	envRoot  = "DEDUP_TEST_ROOT"
	envSeed  = "DEDUP_TEST_SEED"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envChild); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}

// poolContent is content number i of a shared pool: sizes straddle the
// small-content threshold used by children (8 KiB).
func poolContent(i int) []byte {
	sizes := []int{0, 1, 100, 4096, 8191, 8193, 40_000, 200_000}
	return content(uint64(i)+1000, sizes[i%len(sizes)])
}

func runChild(role string) int {
	seed, _ := strconv.Atoi(os.Getenv(envSeed))
	s, err := Open(os.Getenv(envRoot), Options{SmallThreshold: 8192})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	switch role {
	case "insert-set":
		err = childInsertSet(ctx, s, seed)
	case "insert-loop":
		err = childInsertLoop(ctx, s, seed)
	case "gc-loop":
		err = childGCLoop(ctx, s, seed)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childInsertSet inserts pool contents seed*20 .. seed*20+59 (so that
// neighbours overlap by 40) with 4 goroutines, and commits layer p<seed>.
func childInsertSet(ctx context.Context, s *Store, seed int) error {
	in, err := s.BeginIngest(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for g := range 4 {
		wg.Go(func() {
			for i := seed*20 + g; i < seed*20+60; i += 4 {
				o, err := in.Insert(ctx, bytes.NewReader(poolContent(i)), InsertOptions{})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					fmt.Printf("%d %s %v\n", i, o.Digest, !o.Existed)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return in.Commit(ctx, fmt.Sprintf("p%d", seed))
}

// childInsertLoop ingests layers of random pool contents until killed,
// printing "ins <digest>" after each insert returns and "commit <layer>"
// after each commit.
func childInsertLoop(ctx context.Context, s *Store, seed int) error {
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	for k := 0; ; k++ {
		in, err := s.BeginIngest(ctx)
		if err != nil {
			return err
		}
		for range 1 + r.IntN(6) {
			o, err := in.Insert(ctx, bytes.NewReader(poolContent(r.IntN(64))), InsertOptions{})
			if err != nil {
				return err
			}
			fmt.Printf("ins %s\n", o.Digest)
		}
		id := fmt.Sprintf("c%d-%d", seed, k)
		if err := in.Commit(ctx, id); err != nil {
			return err
		}
		fmt.Printf("commit %s\n", id)
	}
}

// childGCLoop drops a random committed layer now and then and collects,
// until killed. It prints "drop <layer>" before dropping.
func childGCLoop(ctx context.Context, s *Store, seed int) error {
	r := rand.New(rand.NewPCG(uint64(seed), 9))
	for {
		if layers, err := s.Layers(); err == nil && len(layers) > 4 {
			id := layers[r.IntN(len(layers))]
			fmt.Printf("drop %s\n", id)
			s.DropRefs(ctx, id)
		}
		if _, err := s.GC(ctx); err != nil {
			return err
		}
		fmt.Println("gc")
	}
}

// child is a running child process and its output lines.
type child struct {
	cmd     *exec.Cmd
	lines   []string
	started chan struct{} // closed at the first output line: it is at work
	done    chan struct{}
}

// killAfterStart kills c with SIGKILL a random delay after it starts
// working (or after 10 s if it never does).
func (c *child) killAfterStart(delay time.Duration) {
	go func() {
		select {
		case <-c.started:
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
		time.Sleep(delay)
		c.cmd.Process.Signal(syscall.SIGKILL)
	}()
}

func startChild(t *testing.T, root, role string, seed int) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+role, envRoot+"="+root, envSeed+"="+strconv.Itoa(seed))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, started: make(chan struct{}), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if len(c.lines) == 0 {
				close(c.started)
			}
			c.lines = append(c.lines, sc.Text())
		}
		close(c.done)
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return c
}

// wait waits for the child; killed children are expected to die of
// SIGKILL, others to exit 0.
func (c *child) wait(t *testing.T, killed bool) {
	t.Helper()
	<-c.done
	err := c.cmd.Wait()
	if killed {
		if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); err != nil && !(ok && ws.Signaled()) {
			t.Fatalf("child %v: %v (%s)", c.cmd.Env[len(c.cmd.Env)-3:], err, c.cmd.Stderr)
		}
		return
	}
	if err != nil {
		t.Fatalf("child: %v (%s)", err, c.cmd.Stderr)
	}
}

func TestMultiProcessInsert(t *testing.T) {
	root := t.TempDir() + "/store"
	const procs = 4
	// A collector runs in another process all along: it must not delete
	// anything the inserters pinned or committed.
	gc := startChild(t, root, "gc-loop", 99)
	var cs []*child
	for p := range procs {
		cs = append(cs, startChild(t, root, "insert-set", p))
	}
	created := map[string]int{}
	byIndex := map[int]string{}
	for _, c := range cs {
		c.wait(t, false)
		for _, l := range c.lines {
			f := strings.Fields(l)
			i, _ := strconv.Atoi(f[0])
			if prev, ok := byIndex[i]; ok && prev != f[1] {
				t.Fatalf("content %d named %s and %s", i, prev, f[1])
			}
			byIndex[i] = f[1]
			if f[2] == "true" {
				created[f[1]]++
			}
		}
	}
	gc.cmd.Process.Signal(syscall.SIGKILL)
	gc.wait(t, true)
	distinct := map[string]bool{}
	for _, d := range byIndex {
		distinct[d] = true
	}
	for d := range distinct {
		if created[d] != 1 {
			t.Errorf("object %s reported created %d times", d, created[d])
		}
	}
	s, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.Fsck(context.Background(), FsckOptions{})
	if err != nil || !rep.Clean() || rep.Objects != len(distinct) {
		t.Fatalf("fsck: %+v %v (want %d objects)", rep, err, len(distinct))
	}
	for p := range procs {
		ds, err := s.Refs(fmt.Sprintf("p%d", p))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for i := p * 20; i < p*20+60; i++ {
			want[byIndex[i]] = true
		}
		if len(ds) != len(want) {
			t.Fatalf("layer p%d has %d refs, want %d", p, len(ds), len(want))
		}
		for _, d := range ds {
			if !want[d.String()] {
				t.Fatalf("layer p%d refs unexpected %s", p, d)
			}
		}
	}
	if rep, err := s.GC(context.Background()); err != nil || rep.Removed != 0 {
		t.Fatalf("GC removed referenced objects: %+v %v", rep, err)
	}
}

// TestCrash kills children with SIGKILL at random points while they
// insert and collect, for a bounded total time, and checks the store
// after every round: fsck clean, staging empty, every object of every
// committed (and not dropped) layer present, and, in rounds without a
// collector, every object whose insert returned present.
func TestCrash(t *testing.T) {
	budget := 3 * time.Second
	if testing.Short() {
		budget = 500 * time.Millisecond
	}
	root := t.TempDir() + "/store"
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	committed := map[string][]string{}
	dropped := map[string]bool{}
	start := time.Now()
	rounds := 0
	for ; time.Since(start) < budget || rounds < 4; rounds++ {
		withGC := rounds%2 == 1
		ins := []*child{startChild(t, root, "insert-loop", rounds*2), startChild(t, root, "insert-loop", rounds*2+1)}
		var gc *child
		if withGC {
			gc = startChild(t, root, "gc-loop", rounds)
		}
		all := append(ins[:len(ins):len(ins)], gc)
		if gc == nil {
			all = ins
		}
		for _, c := range all {
			c.killAfterStart(time.Duration(r.IntN(60)) * time.Millisecond)
		}
		var reported []string
		for _, c := range all {
			c.wait(t, true)
			var pending []string
			for _, l := range c.lines {
				// A child killed mid-write may leave a torn last line.
				f := strings.Fields(l)
				if len(f) != 2 || (f[0] == "ins" && len(f[1]) != 64) {
					continue
				}
				switch f[0] {
				case "ins":
					reported = append(reported, f[1])
					pending = append(pending, f[1])
				case "commit":
					committed[f[1]] = pending
					pending = nil
				case "drop":
					dropped[f[1]] = true
				}
			}
		}
		checkAfterCrash(t, root, committed, dropped, reported, !withGC)
	}
	t.Logf("%d rounds, %d layers committed, %d dropped", rounds, len(committed), len(dropped))
	if len(committed) == 0 {
		t.Fatal("no layer was ever committed: the children never got far enough")
	}
}

func checkAfterCrash(t *testing.T, root string, committed map[string][]string, dropped map[string]bool, reported []string, checkReported bool) {
	t.Helper()
	s, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.Fsck(context.Background(), FsckOptions{})
	if err != nil || !rep.Clean() {
		t.Fatalf("fsck after crash: %+v %v", rep, err)
	}
	if ents, _ := os.ReadDir(root + "/" + dirStaging); len(ents) != 0 {
		t.Fatalf("staging holds %d leftover files", len(ents))
	}
	for id, ds := range committed {
		if dropped[id] {
			continue
		}
		for _, d := range ds {
			dd, _ := ParseDigest(d)
			if !s.Has(dd) {
				t.Fatalf("object %s of committed layer %s is missing", d, id)
			}
		}
	}
	if checkReported {
		for _, d := range reported {
			dd, _ := ParseDigest(d)
			if !s.Has(dd) {
				t.Fatalf("object %s whose insert returned is missing", d)
			}
		}
	}
}
