package maint

import (
	"context"
	"fmt"

	"github.com/docker/go-units"
	storage "go.podman.io/storage"

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
			flat, err := dropUnusedFlatImages(store, ext)
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			if flat.Removed > 0 {
				fmt.Fprintf(g.Stdout, "removed %d flattened images (%s) of chains no image or container uses\n", flat.Removed, units.HumanSize(float64(flat.Bytes)))
			}
			rep, err := ext.Objects().GC(ctx)
			if err != nil {
				return fmt.Errorf("gc of the object store %s: %w", ext.Objects().Root(), err)
			}
			links, err := ext.PrunePartialPullRepo()
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			if links > 0 {
				fmt.Fprintf(g.Stdout, "removed %d partial-pull links to contents no longer there\n", links)
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

// flatReport says what dropUnusedFlatImages did.
type flatReport struct {
	Removed int
	Bytes   int64
}

// dropUnusedFlatImages removes the cached flattened images of chains
// that no image tops and no container stands on: a mount builds only
// its own chain's image, but images and containers removed since leave
// theirs behind. Dropping an image a mount uses is harmless (the mount
// holds it open); the next mount would build it again.
func dropUnusedFlatImages(store storage.Store, ext driver.Extension) (flatReport, error) {
	var rep flatReport
	flat, err := ext.FlatImages()
	if err != nil {
		return rep, err
	}
	keep := map[string]bool{}
	imgs, err := store.Images()
	if err != nil {
		return rep, fmt.Errorf("list images: %w", err)
	}
	for _, img := range imgs {
		keep[img.TopLayer] = true
		for _, m := range img.MappedTopLayers {
			keep[m] = true
		}
	}
	ctrs, err := store.Containers()
	if err != nil {
		return rep, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs {
		keep[c.LayerID] = true
		if l, err := store.Layer(c.LayerID); err == nil {
			keep[l.Parent] = true // a container mounts its parent's chain
		}
	}
	for id, n := range flat {
		if keep[id] {
			continue
		}
		removed, err := ext.DropFlatImage(id)
		if err != nil {
			return rep, err
		}
		if removed {
			rep.Removed++
			rep.Bytes += n
		}
	}
	return rep, nil
}
