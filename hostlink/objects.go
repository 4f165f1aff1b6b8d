package hostlink

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/cfs-storage/cfs-storage/hostlink/gvariant"
)

// GVariant formats of ostree's objects (ostree-core.h).
const (
	// commitFormat is OSTREE_COMMIT_GVARIANT_FORMAT: metadata, parent,
	// related objects, subject, body, timestamp (big-endian), root
	// dirtree, root dirmeta.
	commitFormat = "(a{sv}aya(say)sstayay)"
	// dirTreeFormat is OSTREE_TREE_GVARIANT_FORMAT: files (name, file
	// checksum) and subdirectories (name, dirtree, dirmeta), each sorted
	// by name.
	dirTreeFormat = "(a(say)a(sayay))"
	// dirMetaFormat is OSTREE_DIRMETA_GVARIANT_FORMAT: uid, gid, mode
	// (big-endian), xattrs.
	dirMetaFormat = "(uuua(ayay))"
	// fileHeaderFormat is OSTREE_FILE_HEADER_GVARIANT_FORMAT: uid, gid,
	// mode (big-endian), rdev (0), symlink target, xattrs.
	fileHeaderFormat = "(uuuusa(ayay))"
	// bareUserMetaFormat is the user.ostreemeta xattr of bare-user file
	// objects: uid, gid, mode (big-endian), xattrs.
	bareUserMetaFormat = "(uuua(ayay))"
)

// types holds the parsed formats; built once per Repo, read only.
type types struct {
	commit, dirtree, dirmeta, header, bareUser *gvariant.Type
}

func newTypes() *types {
	return &types{
		commit:   gvariant.MustParseType(commitFormat),
		dirtree:  gvariant.MustParseType(dirTreeFormat),
		dirmeta:  gvariant.MustParseType(dirMetaFormat),
		header:   gvariant.MustParseType(fileHeaderFormat),
		bareUser: gvariant.MustParseType(bareUserMetaFormat),
	}
}

// xattr is one extended attribute. Name has no trailing NUL (ostree
// stores it with one; encoding adds it back).
type xattr struct {
	Name  string
	Value []byte
}

// commit is a decoded commit object.
type commit struct {
	// Metadata is the commit's a{sv} metadata (ostree.ref-binding,
	// version, …) with values as the gvariant package decodes them.
	Metadata map[string]gvariant.Variant
	// Parent is the parent commit, zero for none.
	Parent   checksum
	Subject  string
	Body     string
	Time     time.Time
	RootTree checksum
	RootMeta checksum
}

// dirTree is a decoded dirtree object: the names in one directory.
type dirTree struct {
	Files []dirTreeFile
	Dirs  []dirTreeDir
}

// dirTreeFile is a non-directory entry of a dirtree.
type dirTreeFile struct {
	Name     string
	Checksum checksum // the file object
}

// dirTreeDir is a subdirectory entry of a dirtree.
type dirTreeDir struct {
	Name string
	Tree checksum // its dirtree object
	Meta checksum // its dirmeta object
}

// dirMeta is a decoded dirmeta object: a directory's owner, mode and
// xattrs.
type dirMeta struct {
	UID, GID uint32
	Mode     uint32 // full st_mode, S_IFDIR included
	Xattrs   []xattr
}

// be32 converts a uint32 that ostree stored big-endian inside a
// little-endian GVariant back to its value (and is its own inverse).
func be32(x uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], x)
	return binary.BigEndian.Uint32(b[:])
}

// decodeTuple decodes data as tuple type t, wrapping errors as
// errCorrupt for the object at what.
func decodeTuple(t *gvariant.Type, data []byte, what string) ([]any, error) {
	v, err := gvariant.Decode(t, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errCorrupt, what, err)
	}
	return v.([]any), nil
}

// readCommit reads and decodes a commit object, verifying its checksum.
func (r *Repo) readCommit(c checksum) (*commit, error) {
	data, err := r.readMetaObject(c, objectCommit)
	if err != nil {
		return nil, err
	}
	what := "commit " + c.String()
	v, err := decodeTuple(r.t.commit, data, what)
	if err != nil {
		return nil, err
	}
	cm := &commit{Metadata: map[string]gvariant.Variant{}, Subject: v[3].(string), Body: v[4].(string)}
	for _, e := range v[0].([]any) {
		kv := e.([]any)
		cm.Metadata[kv[0].(string)] = kv[1].(gvariant.Variant)
	}
	if p := v[1].([]byte); len(p) != 0 {
		if cm.Parent, err = checksumFromBytes(p); err != nil {
			return nil, fmt.Errorf("%w: %s parent: %w", errCorrupt, what, err)
		}
	}
	ts := v[5].(uint64)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], ts)
	cm.Time = time.Unix(int64(binary.BigEndian.Uint64(b[:])), 0).UTC()
	if cm.RootTree, err = checksumFromBytes(v[6].([]byte)); err != nil {
		return nil, fmt.Errorf("%w: %s root dirtree: %w", errCorrupt, what, err)
	}
	if cm.RootMeta, err = checksumFromBytes(v[7].([]byte)); err != nil {
		return nil, fmt.Errorf("%w: %s root dirmeta: %w", errCorrupt, what, err)
	}
	return cm, nil
}

// validName reports whether a dirtree entry name is a single path
// component.
func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00")
}

// readDirTree reads and decodes a dirtree object, verifying its checksum
// and that its names are single path components.
func (r *Repo) readDirTree(c checksum) (*dirTree, error) {
	data, err := r.readMetaObject(c, objectDirTree)
	if err != nil {
		return nil, err
	}
	what := "dirtree " + c.String()
	v, err := decodeTuple(r.t.dirtree, data, what)
	if err != nil {
		return nil, err
	}
	files, dirs := v[0].([]any), v[1].([]any)
	dt := &dirTree{Files: make([]dirTreeFile, 0, len(files)), Dirs: make([]dirTreeDir, 0, len(dirs))}
	for _, e := range files {
		f := e.([]any)
		tf := dirTreeFile{Name: f[0].(string)}
		if tf.Checksum, err = checksumFromBytes(f[1].([]byte)); err != nil || !validName(tf.Name) {
			return nil, fmt.Errorf("%w: %s: bad file entry %q", errCorrupt, what, tf.Name)
		}
		dt.Files = append(dt.Files, tf)
	}
	for _, e := range dirs {
		d := e.([]any)
		td := dirTreeDir{Name: d[0].(string)}
		var err1, err2 error
		td.Tree, err1 = checksumFromBytes(d[1].([]byte))
		td.Meta, err2 = checksumFromBytes(d[2].([]byte))
		if err1 != nil || err2 != nil || !validName(td.Name) {
			return nil, fmt.Errorf("%w: %s: bad directory entry %q", errCorrupt, what, td.Name)
		}
		dt.Dirs = append(dt.Dirs, td)
	}
	return dt, nil
}

// readDirMeta reads and decodes a dirmeta object, verifying its checksum.
func (r *Repo) readDirMeta(c checksum) (*dirMeta, error) {
	data, err := r.readMetaObject(c, objectDirMeta)
	if err != nil {
		return nil, err
	}
	what := "dirmeta " + c.String()
	v, err := decodeTuple(r.t.dirmeta, data, what)
	if err != nil {
		return nil, err
	}
	return &dirMeta{
		UID:    be32(v[0].(uint32)),
		GID:    be32(v[1].(uint32)),
		Mode:   be32(v[2].(uint32)),
		Xattrs: xattrsFromVariant(v[3]),
	}, nil
}

// xattrsFromVariant converts a decoded a(ayay), dropping the NUL that
// ends each name.
func xattrsFromVariant(v any) []xattr {
	items := v.([]any)
	out := make([]xattr, 0, len(items))
	for _, it := range items {
		kv := it.([]any)
		name := kv[0].([]byte)
		if n := len(name); n > 0 && name[n-1] == 0 {
			name = name[:n-1]
		}
		out = append(out, xattr{Name: string(name), Value: kv[1].([]byte)})
	}
	return out
}

// xattrsToVariant converts xattrs to the a(ayay) value ostree checksums,
// names NUL-terminated.
func xattrsToVariant(xs []xattr) []any {
	out := make([]any, 0, len(xs))
	for _, x := range xs {
		name := append([]byte(x.Name), 0)
		out = append(out, []any{name, x.Value})
	}
	return out
}
