// Command cfs-storage is the command-line tool of the cfs storage driver:
// container storage with composefs layers over one shared object store.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/selfcheck"
)

// command is one subcommand: its one-line help and what it runs.
type command struct {
	help string
	run  func(ctx context.Context, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"selfcheck": {
			help: "check that this machine has what the cfs driver needs",
			run: func(ctx context.Context, args []string) error {
				return selfcheck.Run(ctx, os.Stdout, os.TempDir())
			},
		},
	}
}

func usage(cmds map[string]command) {
	fmt.Fprintln(os.Stderr, "usage: cfs-storage COMMAND [ARGS...]\n\ncommands:")
	for name, c := range cmds {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", name, c.help)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmds := commands()
	if len(os.Args) < 2 {
		usage(cmds)
		os.Exit(2)
	}
	c, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "cfs-storage: unknown command %q\n", os.Args[1])
		usage(cmds)
		os.Exit(2)
	}
	if err := c.run(ctx, os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}
