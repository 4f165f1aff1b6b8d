package driver

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

// TestMain lets containers/storage re-execute the test binary: the
// overlay driver, benchmarked beside cfs, unpacks layers in a chroot
// child.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if v := os.Getenv(crashChildEnv); v != "" {
		var start int
		parts := strings.Split(v, "|")
		fmt.Sscanf(parts[2], "%d", &start)
		runCrashChild(parts[0], parts[1], start)
	}
	os.Exit(m.Run())
}
