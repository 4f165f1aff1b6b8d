package selfcheck

import (
	"context"
	"os"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
)

// Command is `cfs-storage selfcheck`.
func Command() app.Command {
	return app.Command{
		Name: "selfcheck", Help: "check that this machine has what the cfs driver needs",
		Run: func(ctx context.Context, g *app.Globals, args []string) error {
			fs := app.NewFlags("selfcheck", "", g.Stderr)
			if err := fs.Parse(args); err != nil {
				return err
			}
			return Run(ctx, g.Stdout, os.TempDir())
		},
	}
}
