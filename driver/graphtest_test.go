package driver

import (
	"testing"

	"go.podman.io/storage/drivers/graphtest"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// containers/storage's own conformance suite for graph drivers, run
// against cfs. graphtest keeps one driver across the subtests and removes
// it when the last one puts it back.
func TestGraphtest(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("CreateEmpty", func(t *testing.T) { graphtest.DriverTestCreateEmpty(t, Name) })
	t.Run("CreateBase", func(t *testing.T) { graphtest.DriverTestCreateBase(t, Name) })
	t.Run("CreateSnap", func(t *testing.T) { graphtest.DriverTestCreateSnap(t, Name) })
	t.Run("CreateFromTemplate", func(t *testing.T) { graphtest.DriverTestCreateFromTemplate(t, Name) })
	t.Run("DeepLayerRead5", func(t *testing.T) { graphtest.DriverTestDeepLayerRead(t, 5, Name) })
	t.Run("DeepLayerRead50", func(t *testing.T) { graphtest.DriverTestDeepLayerRead(t, 50, Name) })
	t.Run("DiffApply10", func(t *testing.T) { graphtest.DriverTestDiffApply(t, 10, Name) })
	t.Run("Changes", func(t *testing.T) { graphtest.DriverTestChanges(t, Name) })
	t.Run("Echo", func(t *testing.T) { graphtest.DriverTestEcho(t, Name) })
	t.Run("ListLayers", func(t *testing.T) { graphtest.DriverTestListLayers(t, Name) })
}
