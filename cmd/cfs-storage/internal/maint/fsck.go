package maint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/docker/go-units"
	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/driver"
)

// ErrProblems is returned (wrapped) when fsck finds problems.
var ErrProblems = errors.New("fsck found problems")

// FsckCommand is `cfs-storage fsck`.
func FsckCommand() app.Command {
	const usage = "[--sample FRACTION] [--repair]"
	return app.Command{
		Name: "fsck", Usage: usage, Help: "verify the store; exits 1 and names affected images and containers on problems",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("fsck", usage, g.Stderr)
			var o dedup.FsckOptions
			fs.Float64Var(&o.Sample, "sample", 0, "rehash only this fraction of objects, in (0,1) (default: all)")
			fs.BoolVar(&o.Repair, "repair", false, "move corrupt objects to quarantine so the next pull of their content writes good copies")
			if err := fs.Parse(args); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			d, err := store.GraphDriver()
			if err != nil {
				return fmt.Errorf("open driver %s: %w", store.GraphDriverName(), err)
			}
			ext, ok := driver.AsExtension(d)
			if !ok {
				return checkStorage(g.Stdout, store)
			}
			return Fsck(ctx, g.Stdout, store, ext, o)
		},
	}
}

// Fsck checks the object store and every layer's composefs images and
// prints what it found. It returns an error wrapping ErrProblems when the
// store has problems.
func Fsck(ctx context.Context, w io.Writer, store storage.Store, ext driver.Extension, o dedup.FsckOptions) error {
	objs := ext.Objects()
	rep, err := objs.Fsck(ctx, o)
	if err != nil {
		return fmt.Errorf("fsck of the object store %s: %w", objs.Root(), err)
	}
	fmt.Fprintf(w, "objects: %d, rehashed: %d (%s)\n", rep.Objects, rep.Checked, units.HumanSize(float64(rep.CheckedBytes)))
	u, err := findUsers(store)
	if err != nil {
		return err
	}
	var imgs, ctrs []string
	problem := func(kind string, p dedup.Problem) {
		i, c := u.of(p.Layers)
		imgs, ctrs = append(imgs, i...), append(ctrs, c...)
		fmt.Fprintf(w, "%s object %s: %s\n  layers: %s\n  images: %s\n  containers: %s\n",
			kind, p.Digest, p.Detail, list(shortLayers(p.Layers)), list(i), list(c))
	}
	for _, p := range rep.Corrupt {
		problem("CORRUPT", p)
	}
	for _, p := range rep.Missing {
		problem("MISSING", p)
	}
	for _, s := range rep.Stray {
		fmt.Fprintf(w, "stray entry (left in place): %s\n", s)
	}
	for _, l := range rep.BadRefs {
		i, c := u.of([]string{l})
		imgs, ctrs = append(imgs, i...), append(ctrs, c...)
		fmt.Fprintf(w, "DAMAGED refs of layer %.12s\n  images: %s\n  containers: %s\n", l, list(i), list(c))
	}
	for _, q := range rep.Quarantined {
		fmt.Fprintf(w, "quarantined: %s\n", q)
	}
	damagedImages, err := checkImages(ctx, w, ext, o.Repair, u, &imgs, &ctrs)
	if err != nil {
		return err
	}
	if rep.Clean() && damagedImages == 0 {
		fmt.Fprintln(w, "no problems found")
		return nil
	}
	n := len(rep.Corrupt) + len(rep.Missing) + len(rep.BadRefs) + damagedImages
	if n == 0 {
		fmt.Fprintln(w, "no damaged objects or images (stray entries and repaired caches only)")
		return nil
	}
	hint := "remove and pull the affected images again (`cfs-storage rmi -f IMAGE` then `cfs-storage pull SRC`)"
	if len(rep.Corrupt) > 0 && !o.Repair {
		hint = "run `cfs-storage fsck --repair` to quarantine corrupt objects, then " + hint
	}
	return fmt.Errorf("%w: %d corrupt, %d missing objects, %d damaged refs, %d damaged layer images; affected images: %s; affected containers: %s: %s",
		ErrProblems, len(rep.Corrupt), len(rep.Missing), len(rep.BadRefs), damagedImages, list(uniq(imgs)), list(uniq(ctrs)), hint)
}

// checkImages verifies the layers' composefs images, prints each problem
// with the images and containers it affects (added to imgs and ctrs), and
// returns how many are damaged beyond what repair fixed (a flattened
// image is a cache: repair removes it and the next mount rebuilds it).
func checkImages(ctx context.Context, w io.Writer, ext driver.Extension, repair bool, u *users, imgs, ctrs *[]string) (int, error) {
	mode := driver.CheckOnly
	if repair {
		mode = driver.CheckRepair
	}
	problems, err := ext.CheckImages(ctx, mode)
	if err != nil {
		return 0, fmt.Errorf("check layer images: %w", err)
	}
	damaged := 0
	for _, p := range problems {
		var i, c []string
		if p.Layer != "" {
			i, c = u.of([]string{p.Layer})
		}
		state := "DAMAGED"
		if p.Repaired {
			state = "REPAIRED"
		} else {
			damaged++
			*imgs, *ctrs = append(*imgs, i...), append(*ctrs, c...)
		}
		fmt.Fprintf(w, "%s image of layer %.12s: %s: %s\n  images: %s\n  containers: %s\n", state, p.Layer, p.Path, p.Detail, list(i), list(c))
	}
	return damaged, nil
}

func uniq(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// checkStorage runs c/storage's own consistency check, for drivers
// without an object store (overlay, vfs).
func checkStorage(w io.Writer, store storage.Store) error {
	rep, err := store.Check(storage.CheckMost())
	if err != nil {
		return fmt.Errorf("check storage (driver %s): %w", store.GraphDriverName(), err)
	}
	n := 0
	for _, m := range []map[string][]error{rep.Layers, rep.ROLayers, rep.Images, rep.ROImages, rep.Containers} {
		for id, errs := range m {
			for _, e := range errs {
				fmt.Fprintf(w, "%.12s: %v\n", id, e)
				n++
			}
		}
	}
	if n > 0 {
		return fmt.Errorf("%w: %d (driver %s, checked by containers/storage): remove and pull the affected images again", ErrProblems, n, store.GraphDriverName())
	}
	fmt.Fprintf(w, "no problems found (driver %s, checked by containers/storage)\n", store.GraphDriverName())
	return nil
}
