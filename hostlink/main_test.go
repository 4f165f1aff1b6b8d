package hostlink

import (
	"os"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

// TestMain lets the test binary run the Stager's namespace helper, as a
// program using the driver does through c/storage's reexec.
func TestMain(m *testing.M) {
	reexec.Register(StageHelperName, StageHelperMain)
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}
