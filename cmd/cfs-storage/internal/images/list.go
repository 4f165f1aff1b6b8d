package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/state"
)

// Summary is one row of `images`.
type Summary struct {
	ID      string    `json:"id"`
	Names   []string  `json:"names"`
	Created time.Time `json:"created"`
	// Size is the sum of the image's layers' uncompressed sizes.
	Size   int64 `json:"size"`
	Layers int   `json:"layers"`
}

// List summarizes every image in the store, newest first.
func List(store storage.Store) ([]Summary, error) {
	imgs, err := store.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Summary
	for _, img := range imgs {
		s := Summary{ID: img.ID, Names: img.Names, Created: img.Created}
		for id := img.TopLayer; id != ""; {
			l, err := store.Layer(id)
			if err != nil {
				return nil, fmt.Errorf("image %s: layer %s: %w", shortID(img.ID), shortID(id), err)
			}
			if l.UncompressedSize > 0 {
				s.Size += l.UncompressedSize
			}
			s.Layers++
			id = l.Parent
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

func writeImages(w io.Writer, list []Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tLAYERS")
	for _, s := range list {
		names := s.Names
		if len(names) == 0 {
			names = []string{"<none>:<none>"}
		}
		for _, n := range names {
			repo, tag := n, "<none>"
			if i := strings.LastIndex(n, ":"); i > strings.LastIndex(n, "/") {
				repo, tag = n[:i], n[i+1:]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", repo, tag, shortID(s.ID),
				units.HumanDuration(time.Since(s.Created))+" ago", units.HumanSizeWithPrecision(float64(s.Size), 3), s.Layers)
		}
	}
	return tw.Flush()
}

// ImagesCommand is `cfs-storage images`.
func ImagesCommand() app.Command {
	const usage = "[--format json] [-q]"
	return app.Command{
		Name: "images", Usage: usage, Help: "list images in the store",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("images", usage, g.Stderr)
			format := fs.String("format", "", "json for machine-readable output")
			quiet := fs.Bool("q", false, "print image IDs only")
			if err := fs.Parse(args); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			list, err := List(store)
			if err != nil {
				return err
			}
			switch {
			case *quiet:
				for _, s := range list {
					fmt.Fprintln(g.Stdout, s.ID)
				}
				return nil
			case *format == "json":
				enc := json.NewEncoder(g.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			case *format != "":
				return fmt.Errorf("images: unknown --format %q: use json", *format)
			}
			return writeImages(g.Stdout, list)
		},
	}
}

// Remove deletes an image (its name or ID) and the layers no other image
// uses. It refuses while containers use the image unless force, in which
// case those containers are removed first.
func Remove(store storage.Store, nameOrID string, force bool) (string, error) {
	img, err := Lookup(store, nameOrID)
	if err != nil {
		return "", err
	}
	ctrs, err := store.Containers()
	if err != nil {
		return "", fmt.Errorf("list containers: %w", err)
	}
	var users, running []string
	for _, c := range ctrs {
		if c.ImageID == img.ID {
			users = append(users, shortID(c.ID))
			if r, err := state.Running(store, c.ID); err != nil {
				return "", err
			} else if r {
				running = append(running, shortID(c.ID))
			}
		}
	}
	// Even with force, a running container keeps its storage: its
	// process would fail on missing files (podman stops it first; there
	// is no stop here).
	if len(running) > 0 {
		return "", fmt.Errorf("image %s (%s) is in use by running containers %s: remove it once they exit",
			shortID(img.ID), DisplayName(img), strings.Join(running, ", "))
	}
	if len(users) > 0 && !force {
		return "", fmt.Errorf("image %s (%s) is in use by containers %s: remove them first with `cfs-storage rm`, or use `rmi --force`",
			shortID(img.ID), DisplayName(img), strings.Join(users, ", "))
	}
	for _, c := range ctrs {
		if c.ImageID != img.ID {
			continue
		}
		if _, err := store.Unmount(c.ID, true); err != nil && !errors.Is(err, storage.ErrLayerUnknown) {
			return "", fmt.Errorf("unmount container %s: %w", shortID(c.ID), err)
		}
		if err := store.DeleteContainer(c.ID); err != nil {
			return "", fmt.Errorf("remove container %s of image %s: %w", shortID(c.ID), shortID(img.ID), err)
		}
		if err := state.RemoveRun(store, c.ID); err != nil {
			return "", fmt.Errorf("remove the run directory of container %s: %w", shortID(c.ID), err)
		}
	}
	if _, err := store.DeleteImage(img.ID, true); err != nil {
		return "", fmt.Errorf("remove image %s (%s): %w", shortID(img.ID), DisplayName(img), err)
	}
	return img.ID, nil
}

// RmiCommand is `cfs-storage rmi`.
func RmiCommand() app.Command {
	const usage = "[-f] [-a] IMAGE..."
	return app.Command{
		Name: "rmi", Usage: usage, Help: "remove images and the layers only they use",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("rmi", usage, g.Stderr)
			force := fs.Bool("f", false, "also remove containers using the image")
			fs.BoolVar(force, "force", false, "also remove containers using the image")
			all := fs.Bool("a", false, "remove all images")
			fs.BoolVar(all, "all", false, "remove all images")
			pos, err := app.ParseInterspersed(fs, args)
			if err != nil {
				return err
			}
			if !*all {
				if err := app.WantArgs("rmi", pos, 1, -1, usage); err != nil {
					return err
				}
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			if *all {
				imgs, err := store.Images()
				if err != nil {
					return fmt.Errorf("list images: %w", err)
				}
				for _, img := range imgs {
					pos = append(pos, img.ID)
				}
			}
			var errs []error
			for _, name := range pos {
				id, err := Remove(store, name, *force)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(g.Stdout, "Deleted: %s\n", id)
			}
			return errors.Join(errs...)
		},
	}
}
