// Command cfs-storage-bench measures the cfs driver (with and without
// host deduplication) against containers/storage's overlay and vfs
// drivers on the same corpus, in one run: pull time and bytes written,
// bytes on disk, container start latency (warm and cold), mount latency
// by image depth, and page-cache growth. main only parses flags; the
// work lives in internal packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/bench"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/scenario"
)

func main() {
	if reexec.Init() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func defaultCache() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "cfs-storage-bench")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "cfs-storage-bench")
	}
	return filepath.Join(os.TempDir(), "cfs-storage-bench")
}

// run parses the flags and runs the benchmark; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cfs-storage-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := bench.Options{Stdout: stdout, Progress: stderr, Command: strings.Join(append([]string{"cfs-storage-bench"}, args...), " ")}
	fs.StringVar(&o.Out, "out", "bench-out", "folder for results.json, report.md and the charts")
	fs.StringVar(&o.Cache, "cache", defaultCache(), "folder for the corpus (built once) and temporary stores")
	fs.BoolVar(&o.Quick, "quick", false, "use the small synthetic corpus (no network; for CI)")
	runs := fs.Int("runs", 0, "repetitions of each latency figure (default 20, 5 with --quick)")
	pullRuns := fs.Int("pull-runs", 0, "pulls per driver, median reported (default 5, 1 with --quick)")
	fs.IntVar(&o.PartialRuns, "partial-runs", 1, "pulls per driver configuration and case in the partial-pull scenario, median reported")
	drivers := fs.String("drivers", strings.Join(scenario.Drivers, ","), "drivers to measure")
	scenarios := fs.String("scenarios", strings.Join(scenario.All, ","), "scenarios to run")
	sources := fs.String("sources", strings.Join(scenario.Sources, ","), "pull sources: the corpus's OCI layout, and docker-registry on 127.0.0.1 serving it as zstd:chunked")
	fs.StringVar(&o.CLI, "cfs-storage", "", "the cfs-storage binary, for df and as overlay-composefs's mkcomposefs (default: next to this program, else on PATH)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	traceFile := fs.String("trace", "", "write a Go execution trace of the whole run to this file (go tool trace)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: cfs-storage-bench [flags]\n\nRuns the benchmark (as root) and writes its report.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cfs-storage-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	o.Runs = *runs
	if o.Runs == 0 {
		o.Runs = 20
		if o.Quick {
			o.Runs = 5
		}
	}
	o.PullRuns = *pullRuns
	if o.PullRuns == 0 {
		o.PullRuns = 5
		if o.Quick {
			o.PullRuns = 1
		}
	}
	if o.PartialRuns < 1 {
		fmt.Fprintf(stderr, "cfs-storage-bench: --partial-runs must be at least 1, not %d\n", o.PartialRuns)
		return 2
	}
	o.Drivers, o.Scenarios, o.Sources = splitList(*drivers), splitList(*scenarios), splitList(*sources)
	for _, rec := range []struct {
		name, path string
		start      func(io.Writer) error
		stop       func()
	}{{"cpu profile", *cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {"trace", *traceFile, trace.Start, trace.Stop}} {
		if rec.path == "" {
			continue
		}
		f, err := os.Create(rec.path)
		if err == nil {
			err = rec.start(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "cfs-storage-bench: %s: %v\n", rec.name, err)
			return 1
		}
		defer rec.stop()
	}
	if _, err := bench.Run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "cfs-storage-bench: %v\n", err)
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
