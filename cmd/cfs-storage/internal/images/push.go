package images

import (
	"context"
	"fmt"
	"io"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"
	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/state"
)

// PushOptions tune Push.
type PushOptions struct {
	TransportOptions
	// DisableCompression pushes layers as the store holds them
	// (uncompressed) where the destination allows it, so that an
	// uncompressed layer keeps its digest; by default layers are
	// compressed with gzip, as podman pushes them.
	DisableCompression bool
	// CompressionFormat, if set, compresses layers with that algorithm
	// (gzip, zstd, zstd:chunked), as podman push --compression-format;
	// CompressionLevel, if not nil, is its level. ForceCompression
	// recompresses layers already compressed otherwise (podman's
	// --force-compression, on by default when a format is given).
	CompressionFormat string
	CompressionLevel  *int
	ForceCompression  bool
	Quiet             bool
	Stderr            io.Writer
}

// Push copies image nameOrID from the store to dest (c/image transport
// syntax) and returns the manifest written.
func Push(ctx context.Context, store storage.Store, nameOrID, dest string, o PushOptions) ([]byte, error) {
	img, err := Lookup(store, nameOrID)
	if err != nil {
		return nil, err
	}
	srcRef, err := storeRef(store, img)
	if err != nil {
		return nil, err
	}
	destRef, err := parseTransportRef(dest)
	if err != nil {
		return nil, err
	}
	pc, err := policyContext()
	if err != nil {
		return nil, err
	}
	defer pc.Destroy()
	// c/image's temporary files go to a directory of the store, removed
	// when the copy ends, or at the next command if it is killed.
	tmp, err := state.NewTempDir(store)
	if err != nil {
		return nil, fmt.Errorf("push image %s: %w", shortID(img.ID), err)
	}
	defer tmp.Remove()
	destSys := o.systemContext()
	destSys.BigFilesTemporaryDir = tmp.Path
	destSys.OCIAcceptUncompressedLayers = o.DisableCompression
	if o.DisableCompression {
		destSys.DirForceDecompress = true
	}
	force := false
	if o.CompressionFormat != "" {
		if o.DisableCompression {
			return nil, fmt.Errorf("push image %s: --compression-format and --disable-compression exclude each other", shortID(img.ID))
		}
		algo, err := compression.AlgorithmByName(o.CompressionFormat)
		if err != nil {
			return nil, fmt.Errorf("push image %s: --compression-format: %w", shortID(img.ID), err)
		}
		destSys.CompressionFormat = &algo
		destSys.CompressionLevel = o.CompressionLevel
		force = o.ForceCompression
	}
	man, err := copy.Image(ctx, pc, destRef, srcRef, &copy.Options{
		SourceCtx:              &types.SystemContext{BigFilesTemporaryDir: tmp.Path},
		DestinationCtx:         destSys,
		ReportWriter:           reportWriter(o.Stderr, o.Quiet),
		ForceCompressionFormat: force,
	})
	if err != nil {
		return nil, withHint(fmt.Errorf("push image %s (%s) to %s: %w", shortID(img.ID), DisplayName(img), dest, err))
	}
	return man, nil
}

// PushCommand is `cfs-storage push`.
func PushCommand() app.Command {
	const usage = "[--tls-verify=false] [--disable-compression | --compression-format gzip|zstd|zstd:chunked [--compression-level N] [--force-compression=false]] [-q] IMAGE DEST"
	return app.Command{
		Name: "push", Usage: usage,
		Help: "copy an image from the store to DEST (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker://REF)",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("push", usage+"\n\n"+PolicyHelp, g.Stderr)
			o := PushOptions{Stderr: g.Stderr}
			o.addFlags(fs)
			fs.BoolVar(&o.DisableCompression, "disable-compression", false, "do not compress layers (an uncompressed layer keeps its digest)")
			fs.StringVar(&o.CompressionFormat, "compression-format", "", "compress layers with gzip, zstd or zstd:chunked (zstd:chunked allows partial pulls)")
			level := fs.Int("compression-level", -1, "compression level of --compression-format (default: the format's)")
			fs.BoolVar(&o.ForceCompression, "force-compression", true, "with --compression-format, recompress layers compressed otherwise")
			fs.BoolVar(&o.Quiet, "q", false, "suppress progress output")
			fs.BoolVar(&o.Quiet, "quiet", false, "suppress progress output")
			pos, err := app.ParseInterspersed(fs, args)
			if err != nil {
				return err
			}
			if err := app.WantArgs("push", pos, 2, 2, usage); err != nil {
				return err
			}
			if *level >= 0 {
				o.CompressionLevel = level
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			_, err = Push(ctx, store, pos[0], pos[1], o)
			return err
		},
	}
}

// saveTransport maps podman save's --format to a transport.
func saveTransport(format string) (string, bool) {
	switch format {
	case "docker-archive", "oci-archive":
		return format, true
	case "oci-dir":
		return "oci", true
	}
	return "", false
}

// SaveCommand is `cfs-storage save`.
func SaveCommand() app.Command {
	const usage = "-o FILE [--format docker-archive|oci-archive|oci-dir] IMAGE"
	return app.Command{
		Name: "save", Usage: usage,
		Help: "write an image to an archive file (or an OCI layout) as podman save does",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("save", usage, g.Stderr)
			var out, format string
			o := PushOptions{Stderr: g.Stderr, TransportOptions: TransportOptions{TLSVerify: true}}
			fs.StringVar(&out, "o", "", "output file (directory for oci-dir)")
			fs.StringVar(&out, "output", "", "output file (directory for oci-dir)")
			fs.StringVar(&format, "format", "docker-archive", "docker-archive, oci-archive or oci-dir")
			fs.BoolVar(&o.Quiet, "q", false, "suppress progress output")
			fs.BoolVar(&o.DisableCompression, "uncompressed", false, "do not compress layers (oci formats)")
			pos, err := app.ParseInterspersed(fs, args)
			if err != nil {
				return err
			}
			if err := app.WantArgs("save", pos, 1, 1, usage); err != nil {
				return err
			}
			transport, ok := saveTransport(format)
			if !ok {
				return fmt.Errorf("save: unknown --format %q: use docker-archive, oci-archive or oci-dir", format)
			}
			if out == "" {
				return fmt.Errorf("save: no output given: use -o FILE")
			}
			store, err := g.OpenStore()
			if err != nil {
				return err
			}
			defer store.Shutdown(false)
			dest := transport + ":" + out
			if transport != "oci" {
				if img, err := Lookup(store, pos[0]); err == nil && len(img.Names) > 0 {
					dest += ":" + img.Names[0]
				}
			}
			_, err = Push(ctx, store, pos[0], dest, o)
			return err
		},
	}
}
