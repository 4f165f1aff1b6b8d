// Command cfs-storage is the command-line tool of the cfs storage driver:
// podman's storage and image libraries with the cfs driver linked in.
// main only wires the commands; the work lives in internal packages.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"go.podman.io/storage/pkg/reexec"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/composefs"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/containers"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/images"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/maint"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/report"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/selfcheck"
)

func commands() []app.Command {
	cmds := []app.Command{
		selfcheck.Command(),
		images.PullCommand(),
		images.PushCommand(),
		images.SaveCommand(),
		images.ImagesCommand(),
		images.RmiCommand(),
		containers.CreateCommand(),
		containers.RmCommand(),
		containers.MountCommand(),
		containers.UmountCommand(),
		containers.PsCommand(),
		containers.RunCommand(),
		report.DfCommand(),
		maint.FsckCommand(),
		maint.GCCommand(),
	}
	return append(cmds, composefs.Commands()...)
}

func main() {
	if reexec.Init() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, commandArgs(os.Args), commands(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// commandArgs returns the arguments app.Main dispatches on. Run through a
// link named mkcomposefs or composefs-info, the program is that command,
// a drop-in for libcomposefs' tool (c/storage's composefs mode runs
// `mkcomposefs --from-file - -` from $PATH).
func commandArgs(argv []string) []string {
	switch name := filepath.Base(argv[0]); name {
	case "mkcomposefs", "composefs-info":
		return append([]string{name}, argv[1:]...)
	}
	return argv[1:]
}
