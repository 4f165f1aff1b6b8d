// Package dumpfile reads and writes the composefs dumpfile: the text format
// that `mkcomposefs --from-file` reads and `composefs-info dump` prints,
// one line per file-system entry:
//
//	PATH SIZE MODE NLINK UID GID RDEV SEC.NSEC PAYLOAD CONTENT DIGEST [KEY=VALUE]...
//
// Parse implements every acceptance rule of the reference parser (libcomposefs
// 1.0.x), in its lenient and strict (CFS_PARSE_STRICT) modes, and returns a
// tree.Tree. Write prints a tree in the dump format; a tree read back from an
// image prints as composefs-info prints it.
package dumpfile
