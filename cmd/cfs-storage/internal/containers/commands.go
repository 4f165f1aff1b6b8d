package containers

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
)

// CreateCommand is `cfs-storage create`.
func CreateCommand() app.Command {
	const usage = "[--name NAME] IMAGE [CMD...]"
	return app.Command{
		Name: "create", Usage: usage, Help: "create a container of an image (prints its ID as the last line)",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("create", usage, g.Stderr)
			name := fs.String("name", "", "container name")
			if err := fs.Parse(args); err != nil {
				return err
			}
			if err := app.WantArgs("create", fs.Args(), 1, -1, usage); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			ctr, _, err := Create(store, fs.Arg(0), *name, fs.Args()[1:])
			if err != nil {
				return err
			}
			fmt.Fprintln(g.Stdout, ctr.ID)
			return nil
		},
	}
}

// RmCommand is `cfs-storage rm`.
func RmCommand() app.Command {
	const usage = "CONTAINER..."
	return app.Command{
		Name: "rm", Usage: usage, Help: "remove containers (unmounting them first)",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("rm", usage, g.Stderr)
			pos, err := app.ParseInterspersed(fs, args)
			if err != nil {
				return err
			}
			if err := app.WantArgs("rm", pos, 1, -1, usage); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			var errs []error
			for _, name := range pos {
				id, err := Remove(store, name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(g.Stdout, id)
			}
			return errors.Join(errs...)
		},
	}
}

// MountCommand is `cfs-storage mount`.
func MountCommand() app.Command {
	const usage = "CONTAINER"
	return app.Command{
		Name: "mount", Usage: usage, Help: "mount a container's root and print its path (the last line of stdout)",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("mount", usage, g.Stderr)
			if err := fs.Parse(args); err != nil {
				return err
			}
			if err := app.WantArgs("mount", fs.Args(), 1, 1, usage); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			c, err := lookup(store, fs.Arg(0))
			if err != nil {
				return err
			}
			path, err := store.Mount(c.ID, "")
			if err != nil {
				return fmt.Errorf("mount container %s (driver %s): %w", shortID(c.ID), store.GraphDriverName(), err)
			}
			fmt.Fprintln(g.Stdout, path)
			return nil
		},
	}
}

// UmountCommand is `cfs-storage umount`.
func UmountCommand() app.Command {
	const usage = "[-f] CONTAINER"
	return app.Command{
		Name: "umount", Usage: usage, Help: "unmount a container's root (once per mount; -f: all)",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("umount", usage, g.Stderr)
			force := fs.Bool("f", false, "unmount even if mounted more than once")
			pos, err := app.ParseInterspersed(fs, args)
			if err != nil {
				return err
			}
			if err := app.WantArgs("umount", pos, 1, 1, usage); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			c, err := lookup(store, pos[0])
			if err != nil {
				return err
			}
			if _, err := store.Unmount(c.ID, *force); err != nil {
				return fmt.Errorf("unmount container %s: %w", shortID(c.ID), err)
			}
			fmt.Fprintln(g.Stdout, c.ID)
			return nil
		},
	}
}

// PsCommand is `cfs-storage ps`.
func PsCommand() app.Command {
	const usage = "[-q]"
	return app.Command{
		Name: "ps", Usage: usage, Help: "list containers",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("ps", usage, g.Stderr)
			quiet := fs.Bool("q", false, "print container IDs only")
			if err := fs.Parse(args); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			ctrs, err := store.Containers()
			if err != nil {
				return fmt.Errorf("list containers: %w", err)
			}
			tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
			if !*quiet {
				fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCREATED\tMOUNTED\tNAMES")
			}
			for i := range ctrs {
				c := &ctrs[i]
				if *quiet {
					fmt.Fprintln(tw, c.ID)
					continue
				}
				md := parseMetadata(c.Metadata)
				mounted, err := store.Mounted(c.ID)
				if err != nil {
					mounted = 0
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", shortID(c.ID), md.Image,
					units.HumanDuration(time.Since(c.Created))+" ago", mounted, containerName(c))
			}
			return tw.Flush()
		},
	}
}
