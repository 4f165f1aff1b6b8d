// Package erofs writes and reads composefs images: EROFS file systems
// whose regular files are overlayfs metacopy stubs redirecting into a
// content-addressed object store, as libcomposefs' mkcomposefs writes them.
//
// Write turns a tree.Tree into an image byte-identical to mkcomposefs 1.0.x
// (format versions 0 and 1). Open reads an image (ours or mkcomposefs') as
// an fs.FS and as a composefs tree.
//
// The on-disk structures and constants are in format.go; the writer plans
// the whole layout first (plan.go, layout.go) and then emits bytes
// sequentially (writer.go).
package erofs
