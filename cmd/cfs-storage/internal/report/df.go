package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/docker/go-units"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
)

// DfCommand is `cfs-storage df`.
func DfCommand() app.Command {
	const usage = "[--format json]"
	return app.Command{
		Name: "df", Usage: usage, Help: "disk usage per image and per layer: unique, shared, shared with the host",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("df", usage, g.Stderr)
			format := fs.String("format", "", "json for machine-readable output (sizes in bytes)")
			if err := fs.Parse(args); err != nil {
				return err
			}
			if *format != "" && *format != "json" {
				return fmt.Errorf("df: unknown --format %q: use json", *format)
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			u, err := Compute(ctx, store)
			if err != nil {
				return fmt.Errorf("df: %w", err)
			}
			if *format == "json" {
				enc := json.NewEncoder(g.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(u)
			}
			return Write(g.Stdout, u)
		},
	}
}

func size(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }

// Write prints the report as tables.
func Write(w io.Writer, u *Usage) error {
	objects := u.Driver == "cfs"
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Images (driver %s, root %s)\n", u.Driver, u.Root)
	fmt.Fprintln(tw, "IMAGE ID\tNAME\tLAYERS\tSIZE\tUNIQUE\tSHARED\tHOST-SHARED")
	for _, i := range u.Images {
		name := "<none>"
		if len(i.Names) > 0 {
			name = i.Names[0]
		}
		fmt.Fprintf(tw, "%.12s\t%s\t%d\t%s\t%s\t%s\t%s\n", i.ID, name, i.Layers, size(i.Logical), size(i.Unique), size(i.Shared), hostCol(objects, i.HostShared))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "LAYER ID\tIMAGES\tSIZE\tOBJECTS\tUNIQUE\tSHARED\tHOST-SHARED\tMETADATA")
	for _, l := range u.Layers {
		imgs := strings.Join(l.Images, ",")
		if imgs == "" {
			imgs = "-"
		}
		if objects {
			fmt.Fprintf(tw, "%.12s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", l.ID, imgs, size(l.Logical), l.Objects, size(l.Unique), size(l.Shared), size(l.HostShared), size(l.Metadata))
		} else {
			fmt.Fprintf(tw, "%.12s\t%s\t%s\t-\t%s\t-\t-\t-\n", l.ID, imgs, size(l.Logical), size(l.Unique))
		}
	}
	if len(u.ReadOnlyStores) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "READ-ONLY STORE\tLAYERS\tOBJECTS\tSHARED\tALSO HERE")
		for _, s := range u.ReadOnlyStores {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", s.Root, s.Layers, s.Objects, size(s.Bytes), size(s.Imported))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("df: write report: %w", err)
	}
	t := u.Total
	fmt.Fprintf(w, "\nStore: %d images, %d layers\n", t.Images, t.Layers)
	if objects {
		fmt.Fprintf(w, "  objects:            %d, %s (%s on disk), %s shared with the host\n", t.Objects, size(t.ObjectBytes), size(t.ObjectDiskBytes), size(t.HostSharedBytes))
		fmt.Fprintf(w, "  metadata:           %s (composefs images, flattened image cache)\n", size(t.MetadataBytes))
		fmt.Fprintf(w, "  flattened images:   %d, %s (a cache: one per chain mounted)\n", t.FlatImages, size(t.FlatImageBytes))
		if h := t.HostLookups; h.Declined > 0 || h.Failed > 0 {
			fmt.Fprintf(w, "  host lookups:       %d declined (no usable host object), %d failed\n", h.Declined, h.Failed)
			if h.LastError != "" {
				fmt.Fprintf(w, "  last lookup error:  %s\n", h.LastError)
			}
		}
	}
	fmt.Fprintf(w, "  total:              %s\n", size(t.StoreBytes))
	if objects && t.HostSharedBytes > 0 {
		fmt.Fprintf(w, "  beyond the host:    %s (objects shared with the host take no new space)\n", size(t.StoreBytes-t.HostSharedBytes))
	}
	fmt.Fprintf(w, "  as plain layers:    %s", size(t.PlainBytes))
	if objects && t.PlainBytes > 0 {
		fmt.Fprintf(w, " (this store takes %.0f%% of that)", 100*float64(t.StoreBytes)/float64(t.PlainBytes))
	}
	fmt.Fprintln(w)
	return nil
}

func hostCol(objects bool, n int64) string {
	if !objects {
		return "-"
	}
	return size(n)
}
