package driver

import (
	"fmt"
	"os/exec"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/hostlink"
)

// The host link staging helper runs in a re-executed copy of the program
// (c/storage's reexec: the program's main calls reexec.Init first, as
// podman and cfs-storage do), since a multi-threaded Go process cannot
// enter a new mount namespace itself.
func init() {
	reexec.Register(hostlink.StageHelperName, hostlink.StageHelperMain)
}

// stageHelperCommand is hostlink.StagerOptions.Helper: the command that
// re-executes this program as the staging helper. A program that never
// called reexec.Init gets an error (the host objects are then cloned or
// copied) instead of reexec's panic.
func stageHelperCommand(args ...string) (cmd *exec.Cmd, err error) {
	defer func() {
		if r := recover(); r != nil {
			cmd, err = nil, fmt.Errorf("cfs: cannot run the host link helper (the program's main must call reexec.Init): %v", r)
		}
	}()
	return reexec.Command(args...), nil
}

// statusLines returns the Status lines that only host sharing knows (the
// rest, host repository and link mode and objects by mode, are in
// core.status): the host-linked objects by mode in one line, the host
// lookups that linked nothing in (declined: no host object, or one that
// could not be used; failed: the lookup returned an error) and the
// latest error (cumulative counts of the store, every process included;
// the driver links files into the store only from the host), and how
// this process staged host objects for hard links. Nil without a host
// repository.
func (h *hostShare) statusLines(st dedup.Stats) [][2]string {
	if h == nil {
		return nil
	}
	c := func(m dedup.LinkMode) string { return fmt.Sprint(st.ByMode[m].Objects) }
	alt := st.Alternates
	lines := [][2]string{
		{"Host-linked objects (hardlink/reflink/copy)", c(dedup.LinkHardlink) + "/" + c(dedup.LinkReflink) + "/" + c(dedup.LinkCopy)},
		{"Host lookups not linked (declined/failed)", fmt.Sprintf("%d/%d", alt.Declined.Objects, alt.Failed.Objects)},
	}
	if alt.LastError != "" {
		lines = append(lines, [2]string{"Host lookup last error", alt.LastError})
	}
	if stager := h.staged.Load(); stager != nil {
		s := stager.Stats()
		lines = append(lines, [2]string{"Host link staging (direct/namespace/failed)", fmt.Sprintf("%d/%d/%d", s.Direct, s.Namespace, s.Failed)})
	}
	return lines
}
