// Package composefs implements the composefs tools of cfs-storage:
// `mkcomposefs` (an image from a dumpfile or a directory) and
// `composefs-info` (dump an image, list its objects), spelled like
// libcomposefs' own tools and writing the same bytes.
package composefs

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/app"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/layers/erofs"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Commands returns mkcomposefs and composefs-info.
func Commands() []app.Command {
	return []app.Command{
		{Name: "mkcomposefs", Usage: "[--min-version=N] [--max-version=N] [--print-digest] [--digest-store=DIR] [--from-file] SOURCE IMAGE|-",
			Help: "write a composefs image from a dumpfile (--from-file; strict checks when CFS_PARSE_STRICT is set) or a directory", Run: runMkcomposefs},
		{Name: "composefs-info", Usage: "dump|objects IMAGE",
			Help: "print a composefs image as a dumpfile, or the objects it uses", Run: runInfo},
	}
}

func runMkcomposefs(ctx context.Context, g *app.Globals, args []string) error {
	fs := app.NewFlags("mkcomposefs", Commands()[0].Usage, g.Stderr)
	minV := fs.Uint("min-version", 0, "lowest composefs format version")
	maxV := fs.Uint("max-version", 1, "highest composefs format version (1 is used only for whiteouts)")
	printDigest := fs.Bool("print-digest", false, "print the image's fs-verity digest")
	fromFile := fs.Bool("from-file", false, "SOURCE is a dumpfile (- for stdin)")
	store := fs.String("digest-store", "", "copy file contents into DIR as xx/<62 hex> objects (directory source)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("mkcomposefs: want SOURCE and IMAGE, got %d arguments", fs.NArg())
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	if *minV > 1 || *maxV > 1 {
		return fmt.Errorf("mkcomposefs: format versions are 0 and 1")
	}
	// As mkcomposefs: with neither flag the defaults are 0 and 1; once
	// either is given, the other defaults to 0.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["min-version"] && !set["max-version"] {
		*maxV = 0
	}
	var t *tree.Tree
	var err error
	if *fromFile {
		if *store != "" {
			return fmt.Errorf("mkcomposefs: --digest-store applies to a directory source, not --from-file")
		}
		t, err = readDump(src, g)
	} else {
		t, err = readDir(ctx, src, *store)
	}
	if err != nil {
		return err
	}
	return writeImage(t, dst, erofs.Options{MinVersion: uint32(*minV), MaxVersion: uint32(*maxV)}, *printDigest, g)
}

// StrictEnv names the environment variable that makes mkcomposefs parse
// a dumpfile strictly. As in libcomposefs' mkcomposefs, it counts when it
// is set, whatever its value ("0" included); unset, parsing is lenient,
// so that a drop-in mkcomposefs accepts what the reference accepts (the
// dumps c/storage's composefs mode writes give symlinks size 0, say).
const StrictEnv = "CFS_PARSE_STRICT"

// readDump parses a dumpfile, strictly only when StrictEnv is set.
func readDump(src string, g *app.Globals) (*tree.Tree, error) {
	var r io.Reader = os.Stdin
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return nil, fmt.Errorf("mkcomposefs: %w", err)
		}
		defer f.Close()
		r = f
	}
	_, strict := os.LookupEnv(StrictEnv)
	t, err := dumpfile.Parse(r, dumpfile.Options{Strict: strict})
	if err != nil {
		return nil, fmt.Errorf("mkcomposefs: %s: %w", src, err)
	}
	return t, nil
}

// readDir reads a directory tree: files of 1..64 bytes inline, others
// external, named by fs-verity digest (and copied into store if set).
func readDir(ctx context.Context, src, store string) (*tree.Tree, error) {
	var contents layers.Contents = layers.HashContents{}
	if store != "" {
		contents = digestStore{dir: store}
	}
	t, err := layers.FromUpper(ctx, src, nil, contents, layers.IngestOptions{InlineLimit: 64})
	if err != nil {
		return nil, fmt.Errorf("mkcomposefs: %s: %w", src, err)
	}
	return t, nil
}

func writeImage(t *tree.Tree, dst string, opts erofs.Options, printDigest bool, g *app.Globals) error {
	h := fsverity.New()
	write := func(w io.Writer) error { return erofs.Write(io.MultiWriter(w, h), t, opts) }
	var err error
	if dst == "-" {
		err = write(g.Stdout)
	} else {
		// The mode fopen(3) gives the reference's image: 0666 less the
		// umask. The image is not synced.
		o := atomicfile.Options{Pattern: ".mkcomposefs-", Perm: 0o666 &^ umask(), Flush: atomicfile.FlushNone}
		err = atomicfile.Write(dst, o, write)
	}
	if err != nil {
		return fmt.Errorf("mkcomposefs: %w", err)
	}
	if printDigest {
		fmt.Fprintln(g.Stdout, fsverity.Hex(h.Sum32()))
	}
	return nil
}

// umask returns the process's file mode creation mask.
func umask() os.FileMode {
	data, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return os.FileMode(m)
				}
			}
		}
	}
	return 0o022
}

func runInfo(ctx context.Context, g *app.Globals, args []string) error {
	fs := app.NewFlags("composefs-info", Commands()[1].Usage, g.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 || (fs.Arg(0) != "dump" && fs.Arg(0) != "objects") {
		fs.Usage()
		return fmt.Errorf("composefs-info: want dump|objects IMAGE")
	}
	t, err := openTree(fs.Arg(1))
	if err != nil {
		return err
	}
	if fs.Arg(0) == "dump" {
		return dumpfile.Write(g.Stdout, t)
	}
	return listObjects(g.Stdout, t)
}

func openTree(path string) (*tree.Tree, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("composefs-info: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("composefs-info: %w", err)
	}
	img, err := erofs.Open(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("composefs-info: %s: %w", path, err)
	}
	t, err := img.Tree()
	if err != nil {
		return nil, fmt.Errorf("composefs-info: %s: %w", path, err)
	}
	return t, nil
}

// listObjects prints each backing object path once, sorted.
func listObjects(w io.Writer, t *tree.Tree) error {
	seen := map[string]bool{}
	err := t.Walk(func(_ string, e tree.Dirent) error {
		if e.Node.IsExternal() && e.Node.Payload != "" {
			seen[e.Node.Payload] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(seen))
	for p := range seen {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if _, err := fmt.Fprintln(w, p); err != nil {
			return err
		}
	}
	return nil
}
