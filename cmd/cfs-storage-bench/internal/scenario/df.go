package scenario

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/report"
)

// df runs `cfs-storage df` on a cfs store (the project's shared-store
// report: per image, what it shares with the host, with other images,
// and what is its own) and attaches its output to the disk scenario.
func (r *runner) df(ctx context.Context, bs *benchStore, opts []string) {
	if r.cfg.CLI == "" {
		r.dfMissing = true
		return
	}
	args := []string{"--root", bs.store.GraphRoot(), "--runroot", bs.store.RunRoot(), "--storage-driver", "cfs"}
	for _, o := range opts {
		args = append(args, "--storage-opt", o)
	}
	args = append(args, "df")
	out, err := exec.CommandContext(ctx, r.cfg.CLI, args...).CombinedOutput()
	text := string(out)
	if err != nil {
		text = fmt.Sprintf("cfs-storage df failed: %v\n%s", err, out)
	}
	r.logf("[disk] %s: cfs-storage df:\n%s", bs.label, strings.TrimRight(text, "\n"))
	r.res.Extras = append(r.res.Extras, report.Extra{
		Scenario: "disk", Title: "`cfs-storage df` on the " + bs.label + " store after the pull",
		File: "df-" + bs.label + ".txt", Text: text,
	})
}
