package tests

import (
	"os"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

// TestMain lets containers/storage re-execute the test binary for its
// helpers (the overlay driver unpacks layers in a chroot child).
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if spec := os.Getenv(concurrencyChildEnv); spec != "" {
		runConcurrencyChild(spec)
		os.Exit(0)
	}
	os.Exit(m.Run())
}
