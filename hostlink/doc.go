// Package hostlink gives read-only access to the host's ostree repository
// (config, refs, commit, dirtree and dirmeta objects, file objects), keeps
// an index from file content to host objects, and links host objects whose
// content a container layer needs into the object store, so that host and
// containers share one inode and one page cache. The host repository is
// never written and no host object's metadata is ever changed.
package hostlink
