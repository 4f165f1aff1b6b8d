// Package tarfix builds layer tars for tests: a small vocabulary of
// entries (files, directories, links, devices, whiteouts) written with
// archive/tar, so that every suite describes its layers the same way.
package tarfix

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"time"
)

// Epoch is the modification time of every entry that does not set one.
var Epoch = time.Unix(1700000000, 0)

// Entry is one tar entry and its content.
type Entry struct {
	Header tar.Header
	Body   []byte
}

// File is a regular file with mode 0644.
func File(name, body string) Entry {
	return Entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: Epoch}, []byte(body)}
}

// FileMode is a regular file with the given mode and owner.
func FileMode(name, body string, mode int64, uid, gid int) Entry {
	e := File(name, body)
	e.Header.Mode, e.Header.Uid, e.Header.Gid = mode, uid, gid
	return e
}

// Dir is a directory with mode 0755.
func Dir(name string) Entry {
	return Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: Epoch}}
}

// Symlink is a symbolic link.
func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: Epoch}}
}

// Hardlink is a hard link to an earlier entry, with mode 0644 as tar
// writers record the target's metadata in the link's header.
func Hardlink(name, target string) Entry {
	return Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644, ModTime: Epoch}}
}

// Device is a character ('3') or block ('4') device, or a FIFO ('6').
func Device(name string, typ byte, major, minor int64) Entry {
	return Entry{Header: tar.Header{Name: name, Typeflag: typ, Mode: 0o600, Devmajor: major, Devminor: minor, ModTime: Epoch}}
}

// Whiteout hides path in the layers below.
func Whiteout(dir, name string) Entry { return File(dir+".wh."+name, "") }

// Opaque hides everything below dir in the layers below.
func Opaque(dir string) Entry { return File(dir+".wh..wh..opq", "") }

// WithXattrs sets PAX xattr records on e.
func WithXattrs(e Entry, kv ...string) Entry {
	if e.Header.PAXRecords == nil {
		e.Header.PAXRecords = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Header.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
	}
	return e
}

// Tar writes the entries as a tar archive.
func Tar(entries ...Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("tarfix: %s: %w", h.Name, err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			return nil, fmt.Errorf("tarfix: %s: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tarfix: %w", err)
	}
	return buf.Bytes(), nil
}

// Headers reads the headers of every entry of a tar archive.
func Headers(r io.Reader) ([]*tar.Header, error) {
	var hs []*tar.Header
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs, nil
		}
		if err != nil {
			return hs, fmt.Errorf("tarfix: entry %d: %w", len(hs)+1, err)
		}
		hs = append(hs, h)
	}
}

// RawHeader builds a ustar header block by hand, for tars that
// archive/tar will not write (hand-made PAX sparse maps, oversized PAX
// records): mode 0644, owner 0:0, the given type and size.
func RawHeader(name string, typ byte, size int) []byte {
	h := make([]byte, 512)
	copy(h[0:], name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typ
	copy(h[257:], "ustar\x0000")
	FixChecksum(h)
	return h
}

// FixChecksum recomputes a ustar header block's checksum after an edit.
func FixChecksum(h []byte) {
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h[:512] {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// Pad512 pads data with zeros to a whole number of 512-byte blocks.
func Pad512(data string) []byte {
	b := []byte(data)
	return append(b, make([]byte, (512-len(b)%512)%512)...)
}
