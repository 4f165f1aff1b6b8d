package images

import (
	"context"
	"fmt"
	"io"

	"go.podman.io/image/v5/copy"
	istorage "go.podman.io/image/v5/storage"
	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/state"
)

// PullOptions tune Pull.
type PullOptions struct {
	TransportOptions
	// Quiet suppresses progress output.
	Quiet bool
	// Stderr receives progress (bars on a terminal, lines otherwise).
	Stderr io.Writer
}

// Pull copies the image named by src (c/image transport syntax) into
// the store and returns it.
func Pull(ctx context.Context, store storage.Store, src string, o PullOptions) (*storage.Image, error) {
	srcRef, err := parseTransportRef(src)
	if err != nil {
		return nil, err
	}
	name, err := storeName(srcRef)
	if err != nil {
		return nil, err
	}
	destRef, err := istorage.Transport.ParseStoreReference(store, name)
	if err != nil {
		return nil, fmt.Errorf("pull %s: name %q in containers-storage: %w", src, name, err)
	}
	pc, err := policyContext()
	if err != nil {
		return nil, err
	}
	defer pc.Destroy()
	// The layers the pull writes belong to no image until the pull ends:
	// the gate keeps gc from removing them meanwhile.
	gate, err := state.HoldLayers(store)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", src, err)
	}
	defer gate.Release()
	sys := o.systemContext()
	// c/image's blob copies go to a directory of the store, removed
	// when the pull ends, or at the next command if the pull is killed.
	tmp, err := state.NewTempDir(store)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", src, err)
	}
	defer tmp.Remove()
	sys.BigFilesTemporaryDir = tmp.Path
	_, err = copy.Image(ctx, pc, destRef, srcRef, &copy.Options{
		SourceCtx:      sys,
		DestinationCtx: sys,
		ReportWriter:   reportWriter(o.Stderr, o.Quiet),
	})
	if err != nil {
		return nil, withHint(fmt.Errorf("pull %s into %s (driver %s): %w", src, store.GraphRoot(), store.GraphDriverName(), err))
	}
	img, err := istorage.Transport.GetStoreImage(store, destRef)
	if err != nil {
		return nil, fmt.Errorf("pull %s: find the pulled image %s: %w", src, name, err)
	}
	return img, nil
}

// PullCommand is `cfs-storage pull`.
func PullCommand() app.Command {
	const usage = "[--tls-verify=false] [-q] SRC"
	return app.Command{
		Name: "pull", Usage: usage,
		Help: "copy an image into the store (SRC: oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker://REF)",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("pull", usage+"\n\n"+PolicyHelp+"\nPrints the image ID as the last line of stdout.", g.Stderr)
			o := PullOptions{Stderr: g.Stderr}
			o.addFlags(fs)
			fs.BoolVar(&o.Quiet, "q", false, "suppress progress output")
			fs.BoolVar(&o.Quiet, "quiet", false, "suppress progress output")
			pos, err := app.ParseInterspersed(fs, args)
			if err != nil {
				return err
			}
			if err := app.WantArgs("pull", pos, 1, 1, usage); err != nil {
				return err
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			img, err := Pull(ctx, store, pos[0], o)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.Stdout, img.ID)
			return nil
		},
	}
}
