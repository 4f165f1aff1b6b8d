package maint

import (
	"context"
	"fmt"

	"github.com/docker/go-units"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/driver"
)

// GCCommand is `cfs-storage gc`.
func GCCommand() app.Command {
	return app.Command{
		Name: "gc", Usage: "", Help: "remove layers no image or container uses (unless a pull is in progress), objects no layer references, and c/storage's leftovers",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("gc", "", g.Stderr)
			if err := fs.Parse(args); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			orphans, err := removeOrphanLayers(store)
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			if orphans.Removed > 0 {
				fmt.Fprintf(g.Stdout, "removed %d layers no image or container uses\n", orphans.Removed)
			}
			if orphans.Kept > 0 {
				fmt.Fprintf(g.Stdout, "kept %d layers no image or container uses yet: a pull is in progress\n", orphans.Kept)
			}
			if err := store.GarbageCollect(); err != nil {
				return fmt.Errorf("gc: containers/storage cleanup (driver %s): %w", store.GraphDriverName(), err)
			}
			d, err := store.GraphDriver()
			if err != nil {
				return fmt.Errorf("open driver %s: %w", store.GraphDriverName(), err)
			}
			ext, ok := driver.AsExtension(d)
			if !ok {
				fmt.Fprintf(g.Stdout, "driver %s has no shared object store: only containers/storage leftovers were removed\n", store.GraphDriverName())
				return nil
			}
			rep, err := ext.Objects().GC(ctx)
			if err != nil {
				return fmt.Errorf("gc of the object store %s: %w", ext.Objects().Root(), err)
			}
			fmt.Fprintf(g.Stdout, "removed %d objects (%s), kept %d; %d layers with refs, %d ingests in flight\n",
				rep.Removed, units.HumanSize(float64(rep.RemovedBytes)), rep.Kept, rep.Layers, rep.Pending)
			if n := rep.StalePending + rep.TornRemoved + rep.TempRemoved + rep.IndexRemoved; n > 0 {
				fmt.Fprintf(g.Stdout, "cleaned up: %d stale sessions, %d torn objects, %d temporary files, %d index records\n",
					rep.StalePending, rep.TornRemoved, rep.TempRemoved, rep.IndexRemoved)
			}
			return nil
		},
	}
}
