package dumpfile

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// Write prints t in the `composefs-info dump` format: one line per entry,
// depth-first in pre-order with entries in name order. The second and later
// entries reaching the same node are printed as hard links ("@" mode) to the
// first path met, and directories are not descended into again.
//
// Node fields are printed as they are in the tree: a tree read back from an
// image (erofs.Image.Tree) prints exactly what composefs-info prints for
// that image.
func Write(w io.Writer, t *tree.Tree) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	pr := printer{w: bw, seen: make(map[*tree.Node]string)}
	pr.entry("/", t.Root)
	if t.Root.IsDir() {
		pr.dir("", t.Root)
	}
	if pr.err != nil {
		return fmt.Errorf("dumpfile: write: %w", pr.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dumpfile: write: %w", err)
	}
	return nil
}

type printer struct {
	w    *bufio.Writer
	buf  []byte
	seen map[*tree.Node]string // node -> first path printed
	err  error
}

func (pr *printer) dir(prefix string, d *tree.Node) {
	for _, e := range d.Entries() {
		if pr.err != nil {
			return
		}
		p := prefix + "/" + e.Name
		if first, ok := pr.seen[e.Node]; ok {
			pr.link(p, first, e.Node)
			continue
		}
		pr.entry(p, e.Node)
		if e.Node.IsDir() {
			pr.dir(p, e.Node)
		}
	}
}

// entry prints a node met for the first time.
func (pr *printer) entry(path string, n *tree.Node) {
	pr.seen[n] = path
	b := pr.fixed(path, n, "")
	var payload *string
	switch n.Type() {
	case tree.TypeSymlink:
		payload = &n.Target
	case tree.TypeReg:
		if n.IsExternal() && n.Payload != "" {
			payload = &n.Payload
		}
	}
	pr.finish(b, n, payload)
}

// link prints a later entry reaching a node first printed at first.
func (pr *printer) link(path, first string, n *tree.Node) {
	b := pr.fixed(path, n, "@")
	pr.finish(b, n, &first)
}

// fixed formats PATH through MTIME.
func (pr *printer) fixed(path string, n *tree.Node, at string) []byte {
	b := appendEscaped(pr.buf[:0], path, escPlain)
	b = append(b, ' ')
	b = strconv.AppendUint(b, n.Size, 10)
	b = append(b, ' ')
	b = append(b, at...)
	b = strconv.AppendUint(b, uint64(n.Mode), 8)
	for _, v := range []uint64{uint64(n.Nlink), uint64(n.UID), uint64(n.GID), uint64(n.Rdev)} {
		b = append(b, ' ')
		b = strconv.AppendUint(b, v, 10)
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, n.Mtime.Sec, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(n.Mtime.Nsec), 10)
	return b
}

// finish formats PAYLOAD (nil: absent), CONTENT, DIGEST and the xattrs
// and writes the line.
func (pr *printer) finish(b []byte, n *tree.Node, payload *string) {
	b = append(b, ' ')
	if payload == nil {
		b = append(b, '-')
	} else {
		b = appendEscaped(b, *payload, escLoneDash)
	}
	b = append(b, ' ')
	if n.IsRegular() && n.Size > 0 && n.Content != nil {
		b = appendEscaped(b, string(n.Content), escLoneDash)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	if n.IsRegular() && n.Size > 0 && n.Content == nil && n.Digest != nil {
		b = hex.AppendEncode(b, n.Digest[:])
	} else {
		b = append(b, '-')
	}
	for _, x := range n.Xattrs {
		b = append(b, ' ')
		b = appendEscaped(b, x.Name, escXattr)
		b = append(b, '=')
		b = appendEscaped(b, string(x.Value), escXattr)
	}
	b = append(b, '\n')
	pr.buf = b
	if pr.err == nil {
		_, pr.err = pr.w.Write(b)
	}
}
