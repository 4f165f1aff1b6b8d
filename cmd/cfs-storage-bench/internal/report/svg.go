package report

import (
	"fmt"
	"html"
	"strings"
)

// palette gives each driver a colour, in the order of Results.Drivers.
var palette = []string{"#1f77b4", "#6baed6", "#ff7f0e", "#9e9e9e", "#2ca02c", "#d62728"}

// Chart draws a scenario's primary metrics as a horizontal bar chart:
// one group per metric, one bar per driver, on one scale when the
// metrics share a unit, else each group on its own. It returns "" when the scenario has no primary
// metric.
func (r *Results) Chart(scenario string) string {
	var rows []*row
	for _, rw := range r.rows(scenario) {
		if rw.primary {
			rows = append(rows, rw)
		}
	}
	if len(rows) == 0 {
		return ""
	}
	const (
		width, labelW, valueW = 760, 170, 150
		barH, gap, groupGap   = 16, 3, 18
		top                   = 34
	)
	barMax := float64(width - labelW - valueW)
	// One scale for the chart when its metrics share a unit (depths
	// side by side show growth), else one per metric.
	shared := 0.0
	for _, rw := range rows {
		if rw.unit != rows[0].unit {
			shared = 0
			break
		}
		for _, v := range rw.values {
			shared = maxf(shared, v)
		}
	}
	var body strings.Builder
	y := top
	for _, rw := range rows {
		fmt.Fprintf(&body, `<text x="4" y="%d" font-weight="bold">%s</text>`+"\n", y+12, esc(rw.metric))
		y += 18
		max := shared
		if max == 0 {
			for _, v := range rw.values {
				max = maxf(max, v)
			}
		}
		for i, d := range r.Drivers {
			v, ok := rw.values[d]
			if !ok {
				if r.failure(rw.scenario, d, rw.metric) >= 0 {
					fmt.Fprintf(&body, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, y+12, esc(d))
					fmt.Fprintf(&body, `<text x="%d" y="%d" fill="#d62728">%s</text>`+"\n", labelW+4, y+12, esc(r.cell(rw, d)))
					y += barH + gap
				}
				continue
			}
			w := 0.0
			if max > 0 {
				w = v / max * barMax
			}
			colour := palette[i%len(palette)]
			fmt.Fprintf(&body, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, y+12, esc(d))
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, labelW, y, w, barH, colour)
			fmt.Fprintf(&body, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(labelW)+w+4, y+12, esc(r.cell(rw, d)))
			y += barH + gap
		}
		y += groupGap
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, y)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="4" y="18" font-size="15" font-weight="bold">%s (ratio to %s in parentheses)</text>`+"\n", esc(scenario), Reference)
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}
