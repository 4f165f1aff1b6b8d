// Package hostlink gives read-only access to the host's ostree repository
// (config, refs, commit, dirtree and dirmeta objects, file objects), keeps
// an index from file content to host objects, and links host objects whose
// content a container layer needs into the object store, so that host and
// containers share one inode and one page cache. The host repository is
// never written and no host object's metadata is ever changed.
//
// The driver uses only this: OpenRepo, then NewIndex and
// Index.LookupContent to find a host object by content, NewStager and
// Stager.Stage to give it a name the store can hard-link (with
// StageHelperName and StageHelperMain registered for c/storage's reexec),
// and Stager.Stats for its status. Everything else below is internal;
// the parts no production path calls yet (walk, refs, deployments,
// fileObjects, lookups by digest or SHA-256) are kept, with their tests,
// for restricting the index to what the host deploys and for checking
// the reader against ostree.
//
// # Repository reader
//
// OpenRepo reads the repository's config and accepts the modes whose file
// objects are plain files: bare, bare-user and bare-user-only (archive
// repositories compress their objects and are refused with
// errUnsupportedMode). Objects live in objects/xx/<62 hex>.<type>; commit,
// dirtree and dirmeta objects are GVariants (see the gvariant subpackage)
// whose SHA-256 is their name, checked on every read. A file object's
// logical metadata (what ostree checksums) comes from its stat and xattrs
// in bare repositories, from its user.ostreemeta xattr in bare-user ones
// (the object file itself is owned by the repository's user and a
// symlink is a regular file holding its target), and from its stat with
// uid and gid 0 in bare-user-only ones. checksumFile recomputes a file
// object's name: SHA-256 over the header size (32-bit big-endian), four
// zero bytes, the GVariant (uuuusa(ayay)) with uid, gid and mode
// big-endian, then the content of a regular file.
//
// Which objects the host uses: refs lists refs/heads and refs/remotes,
// deployments lists a sysroot's /ostree/deploy/*/deploy/<checksum>.<serial>
// directories, and fileObjects gives the file objects reachable from any
// set of commits (reading dirtrees only). walk visits every path of a
// commit in `ostree ls -R` order.
//
// Objects are opened O_RDONLY|O_NOATIME (falling back to O_RDONLY where
// the process may not use O_NOATIME). Listing a directory and reading a
// symlink are plain reads for which the kernel has no O_NOATIME.
//
// # Content index
//
// An Index answers "which host object has this content" for the
// ingestion path. NewIndex runs a cheap pass: list objects/xx/ and stat
// each *.file (no file opened), giving size → candidate objects.
// LookupContent (the driver's lookup) proves a candidate holds the
// caller's bytes by ostree's own checksum of them under the candidate's
// file header, never reading the object; lookupDigest hashes, lazily,
// only candidates of the asked size, with IndexOptions.Hash (the
// fs-verity digest in production) and SHA-256 in the same read. Digests
// learnt either way persist in CacheDir, which must be outside the host
// repository:
//
//	digests-<hash name>.v1    fixed-size CRC'd records keyed by object
//	                          name, appended under an flock on
//	                          digests-<hash name>.lock, so no object is
//	                          hashed twice, across processes either
//	scan.v1                   the last cheap pass: a later one lists only
//	                          the objects/xx directories whose mtime
//	                          changed and stats only names it did not know
//
// Object names are content-addressed, so a cached digest stays valid while
// the object exists; an entry is also checked against the object's size
// and mtime, and entries for objects gone after `ostree prune` are dropped
// when an Index is built (rescan), while a lookup re-checks a match still
// exists before returning it. The index matches content only; whoever
// links the returned object should still verify the content digest while
// linking, since a host object damaged in place keeps its name.
//
// # Staging for hard links
//
// On Fedora CoreOS the repository is under /sysroot, a read-only mount,
// and the store under /var, a bind mount of the same filesystem: link(2)
// between them fails with EXDEV although st_dev is equal. A Stager gives
// a host object a second name, in a staging directory inside the store,
// that is the host's inode, so that the store hard-links it within its
// own mount. It tries link(2) first; on EXDEV with an equal st_dev it
// asks a helper process (StageHelperMain, started through c/storage's
// reexec in a new mount namespace, since a multi-threaded Go process
// cannot unshare its own). The helper finds the filesystem in
// /proc/self/mountinfo, binds a mount of it whose root holds both
// directories (or mounts its device again) in its private namespace,
// clears that bind's read-only flag there, checks that the repository and
// the staging directory are the expected inodes through it, and links
// within that one mount. Nothing is written in the repository: the new
// name is in the staging directory, and the host inode only gains a link
// (and a new ctime). A superblock mounted read-only is never remounted.
// Where staging is impossible (errNotStageable) the host object may still
// be cloned (FICLONE, which works across mounts of one filesystem) or
// copied from its own path.
package hostlink
