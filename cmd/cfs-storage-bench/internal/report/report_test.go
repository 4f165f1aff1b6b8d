package report

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func sample() *Results {
	r := &Results{Drivers: []string{"cfs", "overlay"}, Scenarios: []string{"pull", "disk"}}
	r.Add(Measurement{Scenario: "pull", Driver: "cfs", Metric: "time", Value: 1, Unit: "s", Primary: true})
	r.Add(Measurement{Scenario: "pull", Driver: "overlay", Metric: "time", Value: 2, Unit: "s", Primary: true})
	r.Add(Measurement{Scenario: "disk", Driver: "cfs", Metric: "host + images", Value: 3 << 30, Unit: "bytes"})
	r.Add(Measurement{Scenario: "disk", Driver: "overlay", Metric: "÷ lower bound", Value: 1.5, Unit: "ratio"})
	return r
}

// TestTable checks values, units and ratios against overlay.
func TestTable(t *testing.T) {
	tab := sample().Table()
	for _, want := range []string{"1.00 s (0.50×)", "2.00 s", "3.00 GiB", "1.500×"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	if strings.Contains(tab, "1.500× (") {
		t.Errorf("a ratio row got a ratio to overlay:\n%s", tab)
	}
}

// TestChart checks the SVG is well-formed XML with a bar per driver of
// each primary metric, and that scenarios without one get no chart.
func TestChart(t *testing.T) {
	r := sample()
	svg := r.Chart("pull")
	dec := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects != 3 { // background + two bars
		t.Errorf("chart has %d rects, want 3:\n%s", rects, svg)
	}
	if r.Chart("disk") != "" {
		t.Error("disk has no primary metric but got a chart")
	}
}

// TestFailureRows checks that a driver's failure is a row, not a gap:
// the cells it covers say "failed [n]" in the table, the report and the
// chart, the error text follows the table, a failure covering no
// recorded metric gets a row of its own, and other drivers' cells and
// ratios are untouched.
func TestFailureRows(t *testing.T) {
	r := &Results{Drivers: []string{"cfs", "overlay", "overlay-composefs"}, Scenarios: []string{"pull", "start"}}
	for _, d := range []string{"cfs", "overlay", "overlay-composefs"} {
		r.Add(Measurement{Scenario: "pull", Driver: d, Metric: "oci: time", Value: 2, Unit: "s", Primary: true})
	}
	r.Add(Measurement{Scenario: "pull", Driver: "cfs", Metric: "registry: time", Value: 1, Unit: "s", Primary: true})
	r.Add(Measurement{Scenario: "pull", Driver: "overlay", Metric: "registry: time", Value: 2, Unit: "s", Primary: true})
	r.Add(Measurement{Scenario: "pull", Driver: "cfs", Metric: "registry: bytes written", Value: 1 << 20, Unit: "bytes"})
	r.Fail(Failure{Scenario: "pull", Driver: "overlay-composefs", Metrics: "registry: ", Error: "pull deep: apply layer 21:\n  whiteout under a replaced file"})
	r.Fail(Failure{Scenario: "pull", Driver: "overlay-composefs", Metrics: "registry: ", Error: "a second error, dropped"})
	r.Fail(Failure{Scenario: "start", Driver: "overlay-composefs", Error: "start image python not pulled"})
	if len(r.Failures) != 2 {
		t.Fatalf("%d failures recorded, want 2 (the repeat dropped)", len(r.Failures))
	}
	if !r.Failed("pull", "overlay-composefs") || r.Failed("pull", "cfs") {
		t.Error("Failed reports the wrong drivers")
	}
	tab := r.Table()
	lines := strings.Split(tab, "\n")
	find := func(metric string) string {
		for _, l := range lines {
			if strings.Contains(l, metric) {
				return l
			}
		}
		t.Errorf("table has no row %q:\n%s", metric, tab)
		return ""
	}
	if l := find("oci: time"); strings.Contains(l, "failed") || !strings.Contains(l, "2.00 s (1.00×)") {
		t.Errorf("oci row touched by a registry failure: %q", l)
	}
	if l := find("registry: time"); !strings.Contains(l, "1.00 s (0.50×)") || !strings.HasSuffix(strings.TrimSpace(l), "failed [1]") {
		t.Errorf("registry row: %q, want cfs's ratio and overlay-composefs failed [1]", l)
	}
	if l := find("registry: bytes written"); strings.Count(l, "failed [1]") != 1 || !strings.Contains(l, "–") {
		t.Errorf("registry bytes row: %q, want overlay's gap and overlay-composefs failed [1]", l)
	}
	if l := find("(every metric)"); !strings.HasPrefix(l, "start") || !strings.Contains(l, "failed [2]") {
		t.Errorf("a failure with no recorded metric has no row of its own: %q", l)
	}
	for _, want := range []string{"[1] overlay-composefs, pull (registry): pull deep: apply layer 21: | whiteout under a replaced file", "[2] overlay-composefs, start: start image python not pulled"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks the failure line %q:\n%s", want, tab)
		}
	}
	if strings.Contains(tab, "dropped") {
		t.Errorf("the repeated failure was reported:\n%s", tab)
	}
	// Rows stay grouped by scenario even though the start row came last.
	if i, j := strings.Index(tab, "registry: bytes written"), strings.Index(tab, "(every metric)"); i < 0 || j < i {
		t.Errorf("rows out of scenario order:\n%s", tab)
	}
	md := r.Markdown(nil)
	for _, want := range []string{"| registry: time | 1.00 s (0.50×) | 2.00 s | failed [1] |", "## Failures", "- [2] overlay-composefs, start:"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if svg := r.Chart("pull"); !strings.Contains(svg, "failed [1]") {
		t.Errorf("chart does not show the failure:\n%s", svg)
	}
}
