package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one metric of one scenario across drivers.
type row struct {
	scenario, metric, unit string
	primary                bool
	values                 map[string]float64
}

// rows groups measurements by scenario and metric, in the order they
// were recorded. A failure that covers no recorded metric gets a row of
// its own, so that a driver's failure never goes without a row.
func (r *Results) rows(scenario string) []*row {
	var out []*row
	index := map[string]*row{}
	for _, m := range r.Measurements {
		if scenario != "" && m.Scenario != scenario {
			continue
		}
		key := m.Scenario + "\x00" + m.Metric
		rw := index[key]
		if rw == nil {
			rw = &row{scenario: m.Scenario, metric: m.Metric, unit: m.Unit, values: map[string]float64{}}
			index[key] = rw
			out = append(out, rw)
		}
		rw.values[m.Driver] = m.Value
		rw.primary = rw.primary || m.Primary
	}
	for _, f := range r.Failures {
		if scenario != "" && f.Scenario != scenario {
			continue
		}
		covered := false
		for _, rw := range out {
			if rw.scenario == f.Scenario && strings.HasPrefix(rw.metric, f.Metrics) {
				covered = true
				break
			}
		}
		if !covered {
			metric := strings.TrimSuffix(strings.TrimSpace(f.Metrics), ":")
			if metric == "" {
				metric = "(every metric)"
			}
			out = append(out, &row{scenario: f.Scenario, metric: metric, values: map[string]float64{}})
		}
	}
	if scenario == "" {
		// Keep each scenario's rows together, in the order scenarios
		// first appear.
		var order []string
		for _, rw := range out {
			if !slices.Contains(order, rw.scenario) {
				order = append(order, rw.scenario)
			}
		}
		slices.SortStableFunc(out, func(a, b *row) int {
			return slices.Index(order, a.scenario) - slices.Index(order, b.scenario)
		})
	}
	return out
}

// cell formats a driver's value with its ratio to the reference, or
// "failed [n]" (n numbering Failures from 1) when a failure covers it.
func (r *Results) cell(rw *row, driver string) string {
	v, ok := rw.values[driver]
	if !ok {
		if i := r.failure(rw.scenario, driver, rw.metric); i >= 0 {
			return fmt.Sprintf("failed [%d]", i+1)
		}
		return "–"
	}
	s := FormatValue(v, rw.unit)
	if ref, ok := rw.values[Reference]; ok && driver != Reference && ref > 0 && rw.unit != "ratio" {
		s += fmt.Sprintf(" (%s)", formatRatio(v/ref))
	}
	return s
}

// failureLines are the failures, numbered as in the cells, one line
// each (the error text on one line).
func (r *Results) failureLines() []string {
	var out []string
	for i, f := range r.Failures {
		what := f.Scenario
		if m := strings.TrimSuffix(strings.TrimSpace(f.Metrics), ":"); m != "" {
			what += " (" + m + ")"
		}
		var parts []string
		for _, l := range strings.Split(f.Error, "\n") {
			if l = strings.Join(strings.Fields(l), " "); l != "" {
				parts = append(parts, l)
			}
		}
		out = append(out, fmt.Sprintf("[%d] %s, %s: %s", i+1, f.Driver, what, strings.Join(parts, " | ")))
	}
	return out
}

func formatRatio(x float64) string {
	switch {
	case x >= 10:
		return fmt.Sprintf("%.0f×", x)
	case x >= 0.1:
		return fmt.Sprintf("%.2f×", x)
	default:
		return fmt.Sprintf("%.3f×", x)
	}
}

// FormatValue prints a value in its unit for people.
func FormatValue(v float64, unit string) string {
	switch unit {
	case "bytes":
		a := math.Abs(v)
		switch {
		case a >= 1<<30:
			return fmt.Sprintf("%.2f GiB", v/(1<<30))
		case a >= 1<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		case a >= 1<<10:
			return fmt.Sprintf("%.1f KiB", v/(1<<10))
		default:
			return fmt.Sprintf("%.0f B", v)
		}
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "ms":
		if v >= 100 {
			return fmt.Sprintf("%.0f ms", v)
		}
		return fmt.Sprintf("%.2f ms", v)
	case "ratio":
		return fmt.Sprintf("%.3f×", v)
	case "count":
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g %s", v, unit)
	}
}

// Table is the terminal table: one line per scenario and metric, one
// column per driver, ratios against overlay in parentheses.
func (r *Results) Table() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\tmetric\t%s\t\n", strings.Join(r.Drivers, "\t"))
	for _, rw := range r.rows("") {
		cells := make([]string, len(r.Drivers))
		for i, d := range r.Drivers {
			cells[i] = r.cell(rw, d)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", rw.scenario, rw.metric, strings.Join(cells, "\t"))
	}
	tw.Flush()
	if lines := r.failureLines(); len(lines) > 0 {
		b.WriteString("\nfailures (the run went on without them):\n")
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	if len(r.Remarks) > 0 {
		b.WriteString("\n")
		for _, l := range r.Remarks {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// Markdown is the report: what ran where, a table and a chart per
// scenario, and the notes on method.
func (r *Results) Markdown(charts map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# cfs-storage-bench report\n\n")
	fmt.Fprintf(&b, "- command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- started: %s, took %s\n", r.Started.UTC().Format(time.RFC3339), time.Duration(r.Duration*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(&b, "- machine: %s, kernel %s, %d CPUs (%s), %s RAM\n", r.Machine.OS, r.Machine.Kernel, r.Machine.CPUs, r.Machine.CPU, FormatValue(float64(r.Machine.MemBytes), "bytes"))
	fmt.Fprintf(&b, "- runtime for starts: %s\n", r.Machine.Runtime)
	fmt.Fprintf(&b, "- corpus: %s\n", r.Corpus)
	for _, l := range r.CorpusInfo {
		fmt.Fprintf(&b, "  - %s\n", l)
	}
	fmt.Fprintf(&b, "- runs per latency figure: %d\n\n", r.Runs)
	fmt.Fprintf(&b, "Ratios in parentheses are against `%s` (below 1 is less time, bytes or memory than overlay).\n\n", Reference)
	for _, sc := range r.Scenarios {
		rows := r.rows(sc)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n| metric | %s |\n|---|%s\n", sc, strings.Join(r.Drivers, " | "), strings.Repeat("---|", len(r.Drivers)))
		for _, rw := range rows {
			cells := make([]string, len(r.Drivers))
			for i, d := range r.Drivers {
				cells[i] = r.cell(rw, d)
			}
			fmt.Fprintf(&b, "| %s | %s |\n", rw.metric, strings.Join(cells, " | "))
		}
		if name, ok := charts[sc]; ok {
			fmt.Fprintf(&b, "\n![%s](%s)\n", sc, name)
		}
		for _, e := range r.Extras {
			if e.Scenario == sc {
				fmt.Fprintf(&b, "\n%s (`%s`):\n\n```\n%s\n```\n", e.Title, e.File, strings.TrimRight(e.Text, "\n"))
			}
		}
		b.WriteString("\n")
	}
	if lines := r.failureLines(); len(lines) > 0 {
		b.WriteString("## Failures\n\nA driver that fails a scenario, or an image in it, gets `failed [n]` in the rows it would have filled; the run goes on without it.\n\n")
		for _, l := range lines {
			fmt.Fprintf(&b, "- %s\n", l)
		}
		b.WriteString("\n")
	}
	if len(r.Remarks) > 0 {
		b.WriteString("## Remarks\n\n")
		for _, l := range r.Remarks {
			fmt.Fprintf(&b, "- %s\n", l)
		}
		b.WriteString("\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Method\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}
