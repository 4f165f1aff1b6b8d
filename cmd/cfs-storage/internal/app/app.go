// Package app is the frame of the cfs-storage command: global flags in
// podman's spelling, the store they open, and dispatch to subcommands.
// Subcommands live in their own packages and register a Command each.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"sort"
	"strings"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/state"
	"github.com/cfs-storage/cfs-storage/driver" // registers the cfs driver too
)

// Globals are the global flags and the streams commands write to.
type Globals struct {
	Root        string
	RunRoot     string
	Driver      string
	StorageOpts []string
	Stdout      io.Writer
	Stderr      io.Writer
}

// StoreOptions returns the store options: storage.conf (found as
// containers/storage finds it: CONTAINERS_STORAGE_CONF, then
// /etc/containers/storage.conf, …) overridden by the global flags.
func (g *Globals) StoreOptions() (types.StoreOptions, error) {
	// LoadStoreOptions reads the file as DefaultStoreOptions does,
	// without caching it for the process.
	opts, err := types.LoadStoreOptions(types.LoadOptions{})
	if err != nil {
		return opts, fmt.Errorf("read storage.conf: %w", err)
	}
	if g.Root != "" {
		opts.GraphRoot = g.Root
	}
	if g.RunRoot != "" {
		opts.RunRoot = g.RunRoot
	}
	if g.Driver != "" {
		// As podman does (pkg/domain/infra/runtime_libpod.go): naming
		// the driver drops the driver options storage.conf gave. Without
		// the flag they all go to the driver, other drivers' included;
		// cfs skips those as c/storage's own drivers do.
		opts.GraphDriverName = g.Driver
		opts.GraphDriverOptions = nil
	}
	if len(g.StorageOpts) > 0 {
		opts.GraphDriverOptions = append([]string(nil), g.StorageOpts...)
	}
	if opts.GraphDriverName == driver.Name {
		opts.PullOptions = withPartialPullRepo(opts.PullOptions, driver.PartialPullRepo(opts.GraphRoot))
	}
	return opts, nil
}

// withPartialPullRepo returns pull options whose ostree_repos lists repo
// too, so that partial pulls take the contents the store and the host
// already have (podman users add it to storage.conf themselves).
func withPartialPullRepo(pull map[string]string, repo string) map[string]string {
	out := map[string]string{}
	for k, v := range pull {
		out[k] = v
	}
	var repos []string
	for _, r := range strings.Split(out["ostree_repos"], ":") {
		if r != "" && r != repo {
			repos = append(repos, r)
		}
	}
	out["ostree_repos"] = strings.Join(append(repos, repo), ":")
	return out
}

// OpenStore opens the store the flags and storage.conf name. Close it
// with store.Shutdown(false).
func (g *Globals) OpenStore() (storage.Store, error) {
	opts, err := g.StoreOptions()
	if err != nil {
		return nil, err
	}
	store, err := storage.GetStore(opts)
	if err != nil {
		return nil, fmt.Errorf("open storage (driver %q, root %s): %w", opts.GraphDriverName, opts.GraphRoot, err)
	}
	// Killed commands leave temporary and run directories behind.
	if _, err := state.Reap(store); err != nil && g.Stderr != nil {
		fmt.Fprintf(g.Stderr, "Warning: removing what killed commands left: %v\n", err)
	}
	return store, nil
}

// Command is one subcommand.
type Command struct {
	Name  string
	Usage string // arguments, e.g. "[--rm] IMAGE [CMD...]"
	Help  string // one line
	// Run parses args (its own flags included) and does the work.
	Run func(ctx context.Context, g *Globals, args []string) error
}

// ExitError carries an exit code to pass through (a container's, say).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// Main parses the global flags, runs the named command and returns the
// process exit code.
func Main(ctx context.Context, args []string, cmds []Command, stdout, stderr io.Writer) int {
	g := &Globals{Stdout: stdout, Stderr: stderr}
	fs := flag.NewFlagSet("cfs-storage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&g.Root, "root", "", "storage root dir (default from storage.conf)")
	fs.StringVar(&g.RunRoot, "runroot", "", "storage state dir (default from storage.conf)")
	fs.StringVar(&g.Driver, "storage-driver", "", "storage driver: cfs, overlay or vfs (default from storage.conf)")
	fs.Var((*stringList)(&g.StorageOpts), "storage-opt", "storage driver option KEY=VALUE (repeatable)")
	fs.Usage = func() { usage(stderr, fs, cmds) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		usage(stderr, fs, cmds)
		return 2
	}
	name := fs.Arg(0)
	for _, c := range cmds {
		if c.Name == name {
			return exitCode(stderr, c.Run(ctx, g, fs.Args()[1:]))
		}
	}
	fmt.Fprintf(stderr, "Error: unknown command %q for \"cfs-storage\"\n", name)
	usage(stderr, fs, cmds)
	return 2
}

func exitCode(stderr io.Writer, err error) int {
	var exit ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.Code
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	return 1
}

func usage(w io.Writer, fs *flag.FlagSet, cmds []Command) {
	fmt.Fprintln(w, "Usage: cfs-storage [global flags] COMMAND [ARGS...]\n\nCommands:")
	sorted := append([]Command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-16s %s\n", c.Name, c.Help)
	}
	fmt.Fprintln(w, "\nGlobal flags:")
	fs.PrintDefaults()
}

// NewFlags returns a flag set for command c that prints c's usage.
func NewFlags(c string, usageLine string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(c, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cfs-storage %s %s\n", c, usageLine)
		fs.PrintDefaults()
	}
	return fs
}
