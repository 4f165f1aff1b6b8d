// Package testutil holds helpers shared by the privileged tests: gates for
// root and external tools, and mounts that are always cleaned up.
//
// Outside CI a privileged test that cannot run skips with a message saying
// why. With CI=true the same condition fails the test: in CI every
// privileged test is expected to run.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where a
// privileged test that cannot run is a failure rather than a skip.
func InCI() bool {
	return os.Getenv("CI") == "true"
}

// Unavailable stops the test because something it needs is missing:
// a skip with the reason outside CI, a failure in CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true but a privileged test cannot run: "+format, args...)
	}
	t.Skipf("skipping privileged test: "+format, args...)
}

// RequireRoot stops the test unless it runs as root (uid 0).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (running as uid %d)", os.Geteuid())
	}
}

// RequireTool stops the test unless the named program is on PATH, and
// returns its full path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "needs %q on PATH (install it with `make deps`): %v", name, err)
	}
	return p
}
