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
