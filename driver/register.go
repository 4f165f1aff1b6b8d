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
	if options.ImageStore != "" {
		return nil, fmt.Errorf("%w: imagestore %s (storage.conf [storage] imagestore): a separate image store is not supported by the cfs driver (yet)", ErrInvalidOption, options.ImageStore)
	}
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
	// The assignment makes the compiler check that the adapter, with the
	// inferred cleanup type, is a full DiffGetterDriver.
	var drv graphdriver.DiffGetterDriver = newAdapter(graphdriver.ProtoDriver.DeferredRemove, c)
	return drv, nil
}
