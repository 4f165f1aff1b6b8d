// Package bench ties the benchmark together: load (or build) the corpus,
// run the scenarios on every driver, and write the report.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/corpus"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/report"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/scenario"
)

// Options are the command's settings.
type Options struct {
	// Out is the folder the report is written to.
	Out string
	// Cache holds the corpora and the temporary stores.
	Cache string
	// Quick selects the synthetic corpus.
	Quick bool
	// Runs is the number of repetitions of each latency figure.
	Runs int
	// PullRuns is the number of pulls per driver (median reported).
	PullRuns int
	// PartialRuns is the number of partial pulls per configuration and
	// case in the partial-pull scenario (median reported).
	PartialRuns int
	// Drivers and Scenarios select what runs, Sources where pulls come
	// from.
	Drivers, Scenarios, Sources []string
	// CLI is the cfs-storage binary ("": next to this program, else on
	// PATH): `cfs-storage df`, and overlay-composefs's mkcomposefs.
	CLI string
	// Command is the command line, for the report.
	Command string
	// Stdout receives the table, Progress the progress lines.
	Stdout, Progress io.Writer
}

// Run runs the benchmark and writes its report into o.Out.
func Run(ctx context.Context, o Options) (*report.Results, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("cfs-storage-bench needs root (mounts, drop_caches, container runtimes); running as uid %d", os.Geteuid())
	}
	if err := scenario.Validate(o.Drivers, o.Scenarios, o.Runs); err != nil {
		return nil, err
	}
	if err := scenario.ValidateSources(o.Sources); err != nil {
		return nil, err
	}
	if o.CLI == "" {
		o.CLI = findCLI()
	}
	started := time.Now()
	c, err := corpus.Load(ctx, corpus.Options{CacheDir: o.Cache, Quick: o.Quick, Progress: o.Progress})
	if err != nil {
		return nil, err
	}
	res, err := scenario.Run(ctx, scenario.Config{
		Corpus: c, Drivers: o.Drivers, Scenarios: o.Scenarios, Sources: o.Sources, Runs: o.Runs, PullRuns: o.PullRuns, PartialRuns: o.PartialRuns,
		WorkDir: filepath.Join(o.Cache, "work"), Progress: o.Progress, CLI: o.CLI,
	})
	if err != nil {
		return nil, err
	}
	res.Command, res.Started, res.Duration = o.Command, started, time.Since(started).Seconds()
	if err := res.WriteFiles(o.Out); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Stdout, "%s\nreport: %s (results.json, report.md, chart-*.svg)\n", res.Table(), o.Out)
	return res, nil
}

// findCLI returns the cfs-storage binary next to this program, else on
// PATH, else "".
func findCLI() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "cfs-storage")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	p, _ := exec.LookPath("cfs-storage")
	return p
}
