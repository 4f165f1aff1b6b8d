// Package report holds the benchmark's results and writes them: a table
// for the terminal with ratios against overlay, a JSON file, and a
// Markdown report with one SVG bar chart per scenario.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Reference is the driver ratios are computed against.
const Reference = "overlay"

// Measurement is one number: a metric of a scenario on a driver.
type Measurement struct {
	// Scenario is pull, disk, start, depth or memory.
	Scenario string `json:"scenario"`
	// Driver is cfs, cfs-nohost, overlay or vfs.
	Driver string `json:"driver"`
	// Metric names what was measured ("time", "warm median", …).
	Metric string `json:"metric"`
	// Value is in Unit.
	Value float64 `json:"value"`
	// Unit is "s", "ms", "bytes" or "count".
	Unit string `json:"unit"`
	// Primary marks the metrics shown in the scenario's chart.
	Primary bool `json:"primary,omitempty"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	CPU      string `json:"cpu"`
	CPUs     int    `json:"cpus"`
	MemBytes int64  `json:"mem_bytes"`
	Runtime  string `json:"runtime"` // OCI runtime and flags used for starts
}

// Results is one benchmark run.
type Results struct {
	Command      string        `json:"command"`
	Started      time.Time     `json:"started"`
	Duration     float64       `json:"duration_s"`
	Machine      Machine       `json:"machine"`
	Corpus       string        `json:"corpus"`
	CorpusInfo   []string      `json:"corpus_info"`
	Drivers      []string      `json:"drivers"`
	Scenarios    []string      `json:"scenarios"`
	Runs         int           `json:"runs"`
	Notes        []string      `json:"notes"`
	Measurements []Measurement `json:"measurements"`
	// Extras are texts shown in the report and written to their own
	// files (for example `cfs-storage df` output).
	Extras []Extra `json:"extras,omitempty"`
	// Failures are the parts of scenarios a driver could not complete:
	// their rows show "failed [n]" for it, and the error text below.
	Failures []Failure `json:"failures,omitempty"`
	// Remarks are short lines printed under the table (for example
	// which mode a driver variant really ran in).
	Remarks []string `json:"remarks,omitempty"`
}

// Failure is a scenario, or the metrics of it named with a prefix, that
// a driver could not complete.
type Failure struct {
	Scenario string `json:"scenario"`
	Driver   string `json:"driver"`
	// Metrics is the prefix of the metric names it stands for ("" for
	// every metric of the scenario the driver has no value of).
	Metrics string `json:"metrics,omitempty"`
	// Error is the error text.
	Error string `json:"error"`
}

// Extra is a text attached to a scenario.
type Extra struct {
	Scenario string `json:"scenario"`
	Title    string `json:"title"`
	File     string `json:"file"`
	Text     string `json:"text"`
}

// Add records a measurement.
func (r *Results) Add(m Measurement) { r.Measurements = append(r.Measurements, m) }

// Fail records a failure; a second one for the same scenario, driver
// and metrics is dropped (the first error is the one reported).
func (r *Results) Fail(f Failure) {
	if r.failure(f.Scenario, f.Driver, f.Metrics) < 0 {
		r.Failures = append(r.Failures, f)
	}
}

// failure returns the index of the failure that covers a metric of a
// scenario on a driver, or -1.
func (r *Results) failure(scenario, driver, metric string) int {
	for i, f := range r.Failures {
		if f.Scenario == scenario && f.Driver == driver && strings.HasPrefix(metric, f.Metrics) {
			return i
		}
	}
	return -1
}

// Failed reports whether a driver failed (part of) a scenario.
func (r *Results) Failed(scenario, driver string) bool {
	for _, f := range r.Failures {
		if f.Scenario == scenario && f.Driver == driver {
			return true
		}
	}
	return false
}

// Find returns the value of a measurement, or false.
func (r *Results) Find(scenario, driver, metric string) (float64, bool) {
	for _, m := range r.Measurements {
		if m.Scenario == scenario && m.Driver == driver && m.Metric == metric {
			return m.Value, true
		}
	}
	return 0, false
}

// WriteFiles writes results.json, report.md, the charts and table.txt
// into dir.
func (r *Results) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report folder: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "table.txt"), []byte(r.Table()), 0o644); err != nil {
		return fmt.Errorf("write table.txt: %w", err)
	}
	for _, e := range r.Extras {
		if err := os.WriteFile(filepath.Join(dir, e.File), []byte(e.Text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", e.File, err)
		}
	}
	charts := map[string]string{}
	for _, sc := range r.Scenarios {
		svg := r.Chart(sc)
		if svg == "" {
			continue
		}
		name := "chart-" + sc + ".svg"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		charts[sc] = name
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown(charts)), 0o644); err != nil {
		return fmt.Errorf("write report.md: %w", err)
	}
	return nil
}
