// Package tree is the in-memory model of a composefs file-system tree,
// shared by the dumpfile parser and printer (layers/dumpfile), the EROFS
// writer and reader (layers/erofs), tar ingestion and layer merging.
//
// A Tree has a root directory Node. Each Node is one file-system object
// with path-independent metadata (mode with type bits, owner, device
// number, mtime, size, nlink, xattrs, symlink target, inline content or
// external payload path and fs-verity digest). Directories hold their
// entries (Dirent) sorted by name in byte order, with lookup by binary
// search. Hard links are several entries pointing at one *Node; exactly
// one of them, the primary, has HardLink false. Whiteouts are character
// devices with Rdev 0.
//
// The model holds no on-disk layout state: writers compute that in their
// own structures and never modify the tree they are given.
package tree
