package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/images"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/state"
	"github.com/cfs-storage/cfs-storage/cmd/internal/runtime"
)

// RunOptions tune Run.
type RunOptions struct {
	// Name of the new container (optional).
	Name string
	// Command replaces the image's Cmd when set.
	Command []string
	// Runtime is "crun", "runc" or "" (the first found, crun first).
	Runtime string
	// Remove deletes the container when the process ends.
	Remove bool
}

func parseMetadata(s string) metadata {
	var md metadata
	_ = json.Unmarshal([]byte(s), &md) // containers made by other tools carry other metadata
	return md
}

// Run creates a container of image nameOrID, mounts its root, runs its
// process in the foreground with an OCI runtime, and returns the
// process's exit code. The container is unmounted afterwards, and
// removed with o.Remove.
func Run(ctx context.Context, g *app.Globals, store storage.Store, nameOrID string, o RunOptions) (code int, err error) {
	rt, err := runtime.Detect(ctx, o.Runtime)
	if err != nil {
		return -1, err
	}
	ctr, img, err := Create(store, nameOrID, o.Name, o.Command)
	if err != nil {
		return -1, err
	}
	// The run directory stays locked while the run or its runtime lives:
	// rm and rmi -f refuse a running container, and the directory of a
	// killed run is reaped once its runtime is gone.
	lock, err := state.LockRun(store, ctr.ID)
	if err != nil {
		_, rmErr := Remove(store, ctr.ID)
		return -1, errors.Join(err, rmErr)
	}
	defer func() {
		lock.Release()
		err = errors.Join(err, finish(store, ctr.ID, o.Remove))
	}()
	cfg, err := images.Config(ctx, store, img)
	if err != nil {
		return -1, err
	}
	rootfs, err := store.Mount(ctr.ID, "")
	if err != nil {
		return -1, fmt.Errorf("mount container %s (driver %s): %w", shortID(ctr.ID), store.GraphDriverName(), err)
	}
	spec, err := runtime.Spec(&cfg.Config, runtime.SpecOptions{
		Rootfs: rootfs, Hostname: shortID(ctr.ID), Command: o.Command, NoCgroups: rt.NoCgroups,
	})
	if err != nil {
		return -1, fmt.Errorf("run image %s (%s): %w", shortID(img.ID), images.DisplayName(img), err)
	}
	code, err = rt.Run(ctx, runtime.RunOptions{
		ID: ctr.ID, Spec: spec, Dir: state.RunDir(store, ctr.ID), Hold: lock.File(),
		Stdout: g.Stdout, Stderr: g.Stderr,
	})
	if err != nil {
		return -1, fmt.Errorf("container %s of image %s: %w", shortID(ctr.ID), images.DisplayName(img), err)
	}
	return code, nil
}

// finish unmounts a container after its run, and removes it if asked.
func finish(store storage.Store, id string, remove bool) error {
	if remove {
		_, err := Remove(store, id)
		return err
	}
	if _, err := store.Unmount(id, true); err != nil && !errors.Is(err, storage.ErrLayerUnknown) {
		return fmt.Errorf("unmount container %s: %w", shortID(id), err)
	}
	return nil
}

// RunCommand is `cfs-storage run`.
func RunCommand() app.Command {
	const usage = "[--rm] [--runtime crun|runc] [--name NAME] IMAGE [CMD...]"
	return app.Command{
		Name: "run", Usage: usage, Help: "run a process in a new container with crun or runc; exits with its exit code",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("run", usage, g.Stderr)
			var o RunOptions
			fs.BoolVar(&o.Remove, "rm", false, "remove the container when the process exits")
			fs.StringVar(&o.Runtime, "runtime", "", "OCI runtime: crun or runc (default: crun if on PATH, else runc)")
			fs.StringVar(&o.Name, "name", "", "container name")
			if err := fs.Parse(args); err != nil {
				return err
			}
			if err := app.WantArgs("run", fs.Args(), 1, -1, usage); err != nil {
				return err
			}
			o.Command = fs.Args()[1:]
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			code, err := Run(ctx, g, store, fs.Arg(0), o)
			if err != nil {
				return err
			}
			if code != 0 {
				return app.ExitError{Code: code}
			}
			return nil
		},
	}
}
