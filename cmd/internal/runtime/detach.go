package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

// detachHelper is the reexec name of the helper that runs a runtime in
// a private mount namespace without the hybrid layout's cgroup2 mount.
const detachHelper = "cfs-storage-detach-unified"

// unifiedMount is where hybrid hosts (systemd's hybrid mode) mount
// cgroup2 beside the v1 controllers.
const unifiedMount = "/sys/fs/cgroup/unified"

// The helper process is registered once, as c/storage's reexec requires;
// main calls reexec.Init before anything else.
func init() {
	reexec.Register(detachHelper, detachMain)
}

// detachMain runs in the child, already in its own mount namespace
// (made private by the parent's Unshareflags): it detaches the cgroup2
// mount so that crun sees a plain v1 host, then becomes the runtime.
func detachMain() {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "%s: no runtime to run\n", detachHelper)
		os.Exit(125)
	}
	if err := unix.Unmount(unifiedMount, unix.MNT_DETACH); err != nil {
		fmt.Fprintf(os.Stderr, "%s: detach %s: %v\n", detachHelper, unifiedMount, err)
		os.Exit(125)
	}
	err := syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "%s: exec %s: %v\n", detachHelper, os.Args[1], err)
	os.Exit(125)
}

// wrapDetached turns cmd (the runtime) into the helper running it in a
// private mount namespace where the cgroup2 mount is gone.
func wrapDetached(cmd *exec.Cmd) {
	cmd.Args = append([]string{detachHelper, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = reexec.Self()
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGTERM}
}
