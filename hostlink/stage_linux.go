package hostlink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StageHelperName is the name under which a program registers
// StageHelperMain with c/storage's reexec (reexec.Register), the first
// argument of the command StagerOptions.Helper returns.
const StageHelperName = "cfs-hostlink-stage"

// helperStartTimeout bounds the helper's start (exec, mount, checks).
const helperStartTimeout = 30 * time.Second

// The helper protocol, over the helper's stdin and stdout: after it has
// set up its mount, the helper writes one reply line; then for each
// request "<path inside the repository>\x00<name in the session>\x00" it
// links the one to the other and writes a reply line: "ok", or "error "
// and a message. EOF on stdin ends it.
const replyOK = "ok"

// helperBrokenError is an error of the helper process itself (it died or
// its pipe broke), after which it is not used again.
type helperBrokenError struct{ err error }

func (e *helperBrokenError) Error() string { return "namespace helper broken: " + e.err.Error() }
func (e *helperBrokenError) Unwrap() error { return e.err }

// stageHelper is a running helper process.
type stageHelper struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr strings.Builder
}

// startStageHelper starts the helper for repo and session in a new mount
// namespace (Go's fork unshares it before exec and makes every mount
// private in it) and waits for its first reply.
func startStageHelper(ctx context.Context, command func(args ...string) (*exec.Cmd, error), repo, session string) (*stageHelper, error) {
	mnt := filepath.Join(session, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	cmd, err := command(StageHelperName, repo, session, mnt)
	if err != nil {
		return nil, err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNS
	// The helper outlives the thread that started it: no Pdeathsig (it
	// is sent when that thread exits); it ends on EOF instead.
	cmd.SysProcAttr.Pdeathsig = 0
	h := &stageHelper{cmd: cmd}
	cmd.Stderr = &h.stderr
	if h.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h.out = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	ready := make(chan error, 1)
	go func() { ready <- h.reply() }()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(helperStartTimeout):
		err = errors.New("timed out")
	}
	if err != nil {
		h.stop()
		return nil, fmt.Errorf("set up: %w%s", err, h.stderrText())
	}
	return h, nil
}

func (h *stageHelper) stderrText() string {
	if s := strings.TrimSpace(h.stderr.String()); s != "" {
		return " (stderr: " + s + ")"
	}
	return ""
}

// reply reads one reply line: nil for "ok", the helper's error
// otherwise, a *helperBrokenError when the pipe broke.
func (h *stageHelper) reply() error {
	line, err := h.out.ReadString('\n')
	if err != nil {
		return &helperBrokenError{fmt.Errorf("read reply: %w", err)}
	}
	line = strings.TrimSuffix(line, "\n")
	if line == replyOK {
		return nil
	}
	return errors.New(strings.TrimPrefix(line, "error "))
}

// link asks the helper to link rel (in the repository) to name (in the
// session).
func (h *stageHelper) link(rel, name string) error {
	if _, err := io.WriteString(h.in, rel+"\x00"+name+"\x00"); err != nil {
		return &helperBrokenError{fmt.Errorf("send request: %w", err)}
	}
	return h.reply()
}

// stop closes the helper's stdin and waits for it to exit.
func (h *stageHelper) stop() error {
	h.in.Close()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("hostlink: namespace helper: %w%s", err, h.stderrText())
		}
		return nil
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-done
		return errors.New("hostlink: namespace helper did not exit; killed")
	}
}

// StageHelperMain is the namespace helper's main function, to register
// with c/storage's reexec under StageHelperName. Its arguments are the
// repository, the session directory and an empty directory to mount on;
// it must run in a private mount namespace (the Stager starts it so). It
// exits when its stdin is closed.
func StageHelperMain() {
	if len(os.Args) != 4 {
		fmt.Fprintf(os.Stderr, "%s: want 3 arguments (repository, session, mount point), got %d\n", StageHelperName, len(os.Args)-1)
		os.Exit(2)
	}
	if err := runStageHelper(os.Stdin, os.Stdout, os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", StageHelperName, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runStageHelper sets up the mount, reports it, then serves requests
// until EOF.
func runStageHelper(in io.Reader, out io.Writer, repo, session, mnt string) error {
	w := bufio.NewWriter(out)
	send := func(err error) error {
		if err == nil {
			w.WriteString(replyOK + "\n")
		} else {
			w.WriteString("error " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n")
		}
		return w.Flush()
	}
	err := checkPrivateNamespace()
	var fsRepo, fsSession string
	if err == nil {
		fsRepo, fsSession, err = mountWholeFS(repo, session, mnt)
	}
	if err != nil {
		send(err)
		return err
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	if err := send(nil); err != nil {
		return err
	}
	r := bufio.NewReader(in)
	for {
		rel, err := r.ReadString(0)
		if err == io.EOF && rel == "" {
			return nil
		}
		name, err2 := r.ReadString(0)
		if err != nil || err2 != nil {
			return fmt.Errorf("read request: %w", errors.Join(err, err2))
		}
		rel, name = strings.TrimSuffix(rel, "\x00"), strings.TrimSuffix(name, "\x00")
		if err := send(linkStaged(fsRepo, fsSession, rel, name)); err != nil {
			return err
		}
	}
}

// checkPrivateNamespace refuses to go on in the mount namespace of the
// parent process: the helper's mounts must never reach the host's.
func checkPrivateNamespace() error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("mount namespace: %w", err)
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err != nil {
		return fmt.Errorf("parent's mount namespace: %w", err)
	}
	if self == parent {
		return errors.New("not in a private mount namespace (start the helper through a Stager)")
	}
	return nil
}

// linkStaged links fsRepo/rel to fsSession/name, refusing names that
// leave those directories.
func linkStaged(fsRepo, fsSession, rel, name string) error {
	if !filepath.IsLocal(rel) || !filepath.IsLocal(name) || strings.Contains(name, "/") {
		return fmt.Errorf("refused request %q -> %q", rel, name)
	}
	src := filepath.Join(fsRepo, rel)
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("lstat %s: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: not a regular file", rel)
	}
	if err := unix.Link(src, filepath.Join(fsSession, name)); err != nil {
		return fmt.Errorf("link %s: %w", rel, err)
	}
	return nil
}
