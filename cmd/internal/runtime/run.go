package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RunOptions describe one foreground run.
type RunOptions struct {
	// ID names the container for the runtime.
	ID   string
	Spec *specs.Spec
	// Dir holds the bundle (config.json) and the runtime's state root;
	// it is created, and removed when the run ends.
	Dir string
	// Hold, when set, is inherited by the runtime process: a lock on it
	// (the run directory's) is then held as long as the runtime runs,
	// even if this process is killed.
	Hold           *os.File
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Run writes the bundle, runs the container in the foreground with
// `RUNTIME run`, and returns the container process's exit code (128+N
// when killed by signal N). The runtime's state is deleted afterwards.
// Cancelling ctx sends SIGTERM to the runtime, which forwards it.
func (r *Runtime) Run(ctx context.Context, o RunOptions) (code int, err error) {
	bundle := filepath.Join(o.Dir, "bundle")
	state := filepath.Join(o.Dir, "state")
	for _, d := range []string{bundle, state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return -1, fmt.Errorf("create runtime directory: %w", err)
		}
	}
	defer os.RemoveAll(o.Dir)
	data, err := json.MarshalIndent(o.Spec, "", "  ")
	if err != nil {
		return -1, fmt.Errorf("encode runtime spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return -1, fmt.Errorf("write runtime spec: %w", err)
	}
	global := append(append([]string(nil), r.GlobalArgs...), "--root", state)
	defer r.delete(global, o.ID)

	cmd := exec.CommandContext(ctx, r.Path, append(global, "run", "--bundle", bundle, o.ID)...)
	if r.DetachUnified {
		wrapDetached(cmd)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	if o.Hold != nil {
		cmd.ExtraFiles = []*os.File{o.Hold}
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	return -1, fmt.Errorf("run %s: %w", r.Name, err)
}

// delete removes the runtime's state of a container that is gone or
// stuck; errors are ignored (there may be nothing to delete).
func (r *Runtime) delete(global []string, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Path, append(global, "delete", "--force", id)...)
	if r.DetachUnified {
		wrapDetached(cmd)
	}
	_ = cmd.Run()
}
