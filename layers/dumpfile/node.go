package dumpfile

import (
	"bytes"
	"encoding/hex"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// parseNode builds the node described by the fixed fields f and the xattr
// section xs of a non-hard-link line.
func (p *parser) parseNode(f [numFields][]byte, xs []byte) (*tree.Node, error) {
	n := &tree.Node{}
	if err := p.parseNumbers(n, f); err != nil {
		return nil, err
	}
	payload, err := p.optional(f[fPayload])
	if err != nil {
		return nil, err
	}
	payload = cString(payload)
	if len(payload) >= MaxPathValue && n.Type() == tree.TypeSymlink {
		return nil, p.errf("Invalid symlink: target of %d bytes is too long", len(payload))
	}
	if len(payload) >= MaxPathValue {
		return nil, p.errf("Invalid payload (%d bytes)", len(payload))
	}
	content, err := p.optional(f[fContent])
	if err != nil {
		return nil, err
	}
	if err := p.checkContent(n, f[fContent], content); err != nil {
		return nil, err
	}
	if err := p.setKindFields(n, f, payload, content); err != nil {
		return nil, err
	}
	if err := p.parseXattrs(n, xs); err != nil {
		return nil, err
	}
	return n, nil
}

// optional unescapes a PAYLOAD/CONTENT/DIGEST field; the raw text "-"
// means absent and gives nil.
func (p *parser) optional(field []byte) ([]byte, error) {
	if len(field) == 1 && field[0] == '-' {
		return nil, nil
	}
	v, err := unescape(field)
	if err != nil {
		return nil, p.errf("%v", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (p *parser) number(field []byte, base uint64) (uint64, error) {
	v, ok := strtoull(field, base)
	if !ok {
		return 0, p.errf("Invalid integer %q", field)
	}
	return v, nil
}

// parseNumbers fills the numeric fields: SIZE, MODE, NLINK, UID, GID,
// RDEV and MTIME.
func (p *parser) parseNumbers(n *tree.Node, f [numFields][]byte) error {
	var err error
	if n.Size, err = p.number(f[fSize], 10); err != nil {
		return err
	}
	if n.Mode, err = p.parseMode(f[fMode]); err != nil {
		return err
	}
	nlink, err := p.number(f[fNlink], 10)
	if err != nil {
		return err
	}
	uid, err := p.number(f[fUID], 10)
	if err != nil {
		return err
	}
	// Reference quirk: a bad GID or RDEV is an error only when UID is 0.
	gid, ok := strtoull(f[fGID], 10)
	if !ok && uid == 0 {
		return p.errf("Invalid integer %q", f[fGID])
	}
	rdev, ok := strtoull(f[fRdev], 10)
	if !ok && uid == 0 {
		return p.errf("Invalid integer %q", f[fRdev])
	}
	n.Nlink, n.UID, n.GID = uint32(nlink), uint32(uid), uint32(gid)
	typ := n.Type()
	if typ == tree.TypeChar || typ == tree.TypeBlock {
		n.Rdev = uint32(rdev)
	} else if rdev != 0 && p.opts.Strict {
		return p.errf("Non-zero devnum on non-device")
	}
	dot := bytes.IndexByte(f[fMtime], '.')
	if dot < 0 {
		return p.errf("Invalid mtime %q", f[fMtime])
	}
	sec, err := p.number(f[fMtime][:dot], 10)
	if err != nil {
		return err
	}
	nsec, err := p.number(f[fMtime][dot+1:], 10)
	if err != nil {
		return err
	}
	n.Mtime = tree.Time{Sec: int64(sec), Nsec: uint32(nsec)}
	return nil
}

// checkContent applies the CONTENT rules common to all types.
func (p *parser) checkContent(n *tree.Node, raw, content []byte) error {
	if content == nil {
		return nil
	}
	if uint64(len(content)) != n.Size {
		return p.errf("Invalid content size %d for %q (size %d)", len(content), raw[:min(len(raw), 32)], n.Size)
	}
	if n.Type() != tree.TypeSymlink && len(content) > MaxInlineContent {
		return p.errf("Inline content size %d exceeds maximum %d", len(content), MaxInlineContent)
	}
	return nil
}

// setKindFields stores the type-specific fields: symlink target, inline
// content or external payload and digest.
func (p *parser) setKindFields(n *tree.Node, f [numFields][]byte, payload, content []byte) error {
	switch n.Type() {
	case tree.TypeSymlink:
		if len(payload) == 0 {
			return p.errf("Invalid symlink: empty or missing target")
		}
		if p.opts.Strict {
			if n.Size != uint64(len(payload)) {
				return p.errf("Invalid symlink size %d for a %d-byte target", n.Size, len(payload))
			}
			if len(content) > 0 {
				return p.errf("Symlink cannot have content")
			}
		}
		n.Target = string(payload)
		n.Size = uint64(len(payload))
	case tree.TypeReg:
		switch {
		case n.Size == 0:
		case content != nil:
			n.Content = bytes.Clone(content)
		default:
			if payload != nil {
				n.Payload = string(payload)
			}
			d, err := p.digest(f[fDigest])
			if err != nil {
				return err
			}
			n.Digest = d
		}
	}
	return nil
}

// digest parses the DIGEST field of an external file: "-" or at least 64
// hex digits (anything after them is ignored, as in the reference).
func (p *parser) digest(field []byte) (*[32]byte, error) {
	v, err := p.optional(field)
	if err != nil || v == nil {
		return nil, err
	}
	v = cString(v)
	var d [32]byte
	if len(v) < 64 {
		return nil, p.errf("Invalid digest %q: want 64 hex digits", v)
	}
	if _, err := hex.Decode(d[:], v[:64]); err != nil {
		return nil, p.errf("Invalid digest %q: %v", v[:64], err)
	}
	return &d, nil
}

// parseXattrs parses the xattr section, applying the reference's limits
// and per-node budget.
func (p *parser) parseXattrs(n *tree.Node, xs []byte) error {
	if len(xs) > MaxXattrSection {
		return p.errf("Too many xattrs (%d bytes)", len(xs))
	}
	var budget uint64
	for len(xs) > 0 {
		piece := xs
		if i := bytes.IndexByte(xs, ' '); i >= 0 {
			piece, xs = xs[:i], xs[i+1:]
		} else {
			xs = nil
		}
		eq := bytes.IndexByte(piece, '=')
		if eq < 0 {
			return p.errf("Missing = in xattr")
		}
		key, err := unescape(piece[:eq])
		if err != nil {
			return p.errf("%v", err)
		}
		key = cString(key)
		value, err := unescape(piece[eq+1:])
		if err != nil {
			return p.errf("%v", err)
		}
		if len(key) == 0 || len(key) > 255 || len(value) > MaxXattrValue {
			return p.errf("Can't set xattr %q: key or value size out of range", key[:min(len(key), 64)])
		}
		if !setBudgeted(n, p.internKey(key), p.internValue(value), &budget) {
			return p.errf("Can't set xattr %q: too many xattrs", key[:min(len(key), 64)])
		}
	}
	return nil
}

// setBudgeted sets an xattr like the reference's lcfs_node_set_xattr,
// keeping its per-node budget counter; it reports false when the budget
// is exceeded.
func setBudgeted(n *tree.Node, key string, value []byte, budget *uint64) bool {
	if old, ok := n.Xattr(key); ok {
		n.RemoveXattr(key)
		if len(n.Xattrs) > 0 {
			*budget -= uint64(7 + len(key) + len(old))
		} else {
			*budget = 0
		}
	}
	cost := uint64(7 + len(key) + len(value))
	if len(n.Xattrs) == 0 {
		cost += 12
	}
	if *budget+cost > xattrBudget {
		return false
	}
	*budget += cost
	n.Xattrs = append(n.Xattrs, tree.Xattr{Name: key, Value: value})
	return true
}

// internKey returns key as a string shared by all nodes with that key.
func (p *parser) internKey(key []byte) string {
	if s, ok := p.keys[string(key)]; ok {
		return s
	}
	s := string(key)
	p.keys[s] = s
	return s
}

// maxInterned bounds the xattr values shared between nodes (labels and
// other small repeated values); longer ones are copied per node.
const maxInterned = 128

// internValue returns a copy of value, shared between nodes for small
// values. Values are never modified, so sharing is safe.
func (p *parser) internValue(value []byte) []byte {
	if len(value) > maxInterned {
		return bytes.Clone(value)
	}
	if v, ok := p.values[string(value)]; ok {
		return v
	}
	v := append([]byte{}, value...)
	p.values[string(v)] = v
	return v
}
