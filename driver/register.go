package driver

import (
	"fmt"
	"path/filepath"

	graphdriver "go.podman.io/storage/drivers"
)

func init() {
	graphdriver.MustRegister(Name, Init)
}

// Init opens the cfs driver under home (<graphroot>/cfs) with the given
// options; containers/storage calls it for driver = "cfs".
func Init(home string, options graphdriver.Options) (graphdriver.Driver, error) {
	opts, err := ParseOptions(options.DriverOptions)
	if err != nil {
		return nil, err
	}
	runRoot := options.RunRoot
	if runRoot == "" {
		runRoot = filepath.Join(home, "run")
	}
	c, err := newCore(home, runRoot, opts)
	if err != nil {
		return nil, fmt.Errorf("cfs: init %s: %w", home, err)
	}
	// A split store ([storage] imagestore): image layers in the image
	// store's home, container layers here.
	if is := options.ImageStore; is != "" && filepath.Clean(is) != filepath.Dir(filepath.Clean(home)) {
		if err := c.openSplit(filepath.Join(is, Name)); err != nil {
			c.close()
			return nil, fmt.Errorf("cfs: init %s: %w", home, err)
		}
	}
	// The assignments make the compiler check that the adapter, with the
	// inferred cleanup type, is a full DiffGetterDriver and a
	// DriverWithDiffer (partial pulls, partial.go).
	a := newAdapter(graphdriver.ProtoDriver.DeferredRemove, c)
	var _ graphdriver.DriverWithDiffer = a
	var drv graphdriver.DiffGetterDriver = a
	return drv, nil
}
