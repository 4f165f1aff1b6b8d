// Package fsverity computes fs-verity SHA-256 file digests in user space
// (4096-byte Merkle tree blocks, no salt), exactly as `fsverity digest`
// and the kernel's FS_IOC_MEASURE_VERITY report them, and wraps the two
// kernel calls that enable and measure fs-verity on an open file.
//
// The digest is the SHA-256 of the 256-byte fsverity_descriptor, whose
// root_hash field is the root of a Merkle tree over the file's data:
//
//   - the data is split into 4096-byte blocks, the last one zero-padded;
//     each block's SHA-256 forms level 0;
//   - one data block: the root is that block's hash;
//   - otherwise each level's hashes are packed 128 per 4096-byte block
//     (the last block zero-padded) and hashed to form the next level,
//     until a level fits in one block; the root is that block's hash;
//   - empty data: the root is 32 zero bytes (current kernel, fsverity-utils
//     and libcomposefs behaviour).
//
// The user-space digest (digest.go) is separate from the kernel calls
// (ioctl_linux.go): the digest is pure computation and needs no kernel
// support, which matters on hosts without fs-verity, where Enable and
// Measure return ErrNotSupported.
package fsverity
