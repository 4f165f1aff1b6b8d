// Package vm runs the fs-verity tests in a virtual machine: this
// machine's kernel has no fs-verity, Debian's 6.12 kernel from
// bookworm-backports has it.
//
// TestVerityVM (the host side, in make test) fetches that kernel
// (scripts/vm-kernel.sh: apt-get download and dpkg -x into
// ~/.cache/cfs-storage/vm, never installed), builds this package's test
// binary statically (CGO_ENABLED=0), packs it with busybox and the
// kernel modules it needs into an initramfs, and boots it in QEMU (TCG,
// no network) with two ext4 disks: one with the verity feature, one
// without. The guest's /init runs the binary's TestGuest* tests, which
// use the real driver through a containers/storage store, and writes
// their verbose output to a second serial port; the host test turns each
// guest result into a subtest of its own and fails on any failure.
//
// The TestGuest* tests run only inside the VM (CFS_VM_GUEST=1); anywhere
// else they skip.
package vm
