// Package selfcheck implements `cfs-storage selfcheck`: it reports whether
// this machine has what the cfs driver needs (kernel features, privileges,
// tools) and fails when something required is missing.
package selfcheck

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"text/tabwriter"

	"github.com/cfs-storage/cfs-storage/driver/kernel"
)

// Check is one line of the report.
type Check struct {
	Name     string
	OK       bool
	Required bool
	Detail   string
}

// Run probes the machine, using scratch for test mounts, writes the report
// to w and returns an error naming the missing requirements, if any.
func Run(ctx context.Context, w io.Writer, scratch string) error {
	checks, err := Checks(ctx, scratch)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	var missing []string
	for _, c := range checks {
		res := "ok"
		switch {
		case !c.OK && c.Required:
			res = "MISSING"
			missing = append(missing, c.Name)
		case !c.OK:
			res = "absent"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, res, c.Detail)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("selfcheck: write report: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("selfcheck: required features missing: %v", missing)
	}
	return nil
}

// Checks runs every check and returns the results in report order.
func Checks(ctx context.Context, scratch string) ([]Check, error) {
	feat, err := kernel.Probe(ctx, scratch)
	if err != nil {
		return nil, fmt.Errorf("selfcheck: %w", err)
	}
	checks := []Check{
		{Name: "root", OK: os.Geteuid() == 0, Required: true, Detail: fmt.Sprintf("euid %d", os.Geteuid())},
		{Name: "erofs", OK: feat.Erofs, Required: true, Detail: "kernel filesystem"},
		{Name: "overlay", OK: feat.Overlay, Required: true, Detail: "kernel filesystem"},
		{Name: "overlay data-only lower", OK: feat.DataOnlyLower, Required: true, Detail: errText(feat.DataOnlyLowerErr, "lowerdir=meta::data with metacopy redirect")},
	}
	for _, tool := range []string{"crun", "runc", "ostree"} {
		p, err := exec.LookPath(tool)
		checks = append(checks, Check{Name: tool, OK: err == nil, Detail: errText(err, p)})
	}
	return checks, nil
}

func errText(err error, okText string) string {
	if err != nil {
		return err.Error()
	}
	return okText
}
