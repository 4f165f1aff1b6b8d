// Package layers owns the layer model: a layer tar becomes a tree of
// entries (metadata plus, for regular files, a content digest), trees are
// merged to flatten a chain of layers (whiteouts and opaque directories
// applied), and a tree is written back out as a tar (Diff). The composefs
// EROFS writer and reader live in layers/erofs, the composefs dumpfile
// text format in layers/dumpfile.
//
// Nothing here knows about containers/storage; the driver package adapts
// it to the graph driver interface.
package layers
