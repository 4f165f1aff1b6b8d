package dumpfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// ErrInvalid is wrapped by every parse error (as a *ParseError).
var ErrInvalid = errors.New("dumpfile: invalid dumpfile")

// ParseError reports where and why a dumpfile was rejected. Messages follow
// the reference mkcomposefs where it has one.
type ParseError struct {
	Line int    // 1-based line number; 0 when not tied to a line
	Msg  string // what is wrong
}

// Error implements error.
func (e *ParseError) Error() string {
	if e.Line == 0 {
		return "dumpfile: " + e.Msg
	}
	return fmt.Sprintf("dumpfile: line %d: %s", e.Line, e.Msg)
}

// Unwrap returns ErrInvalid.
func (e *ParseError) Unwrap() error { return ErrInvalid }

// Options controls parsing.
type Options struct {
	// Strict adds the reference's CFS_PARSE_STRICT checks: RDEV must be 0
	// on non-devices, a symlink's SIZE must equal its target length and it
	// must have no content, and the last line must end with a newline.
	Strict bool
}

// Limits of the format.
const (
	// MaxInlineContent is the largest inline CONTENT, in bytes.
	MaxInlineContent = 5000
	// MaxPathValue is the bound (exclusive) on symlink targets and payloads.
	MaxPathValue = 4096
	// MaxXattrSection is the largest raw xattr section of a line.
	MaxXattrSection = 65535
	// MaxXattrValue is the largest xattr value.
	MaxXattrValue = 65535
	// xattrBudget is the per-node xattr budget of the reference.
	xattrBudget = 32767
)

// numFields is the number of fixed fields of a line.
const numFields = 11

const (
	fPath = iota
	fSize
	fMode
	fNlink
	fUID
	fGID
	fRdev
	fMtime
	fPayload
	fContent
	fDigest
)

// Parse reads a composefs dumpfile (the text format of `mkcomposefs
// --from-file`) and returns its tree. Hard links become entries with
// HardLink set pointing at their final target's node. Errors are
// *ParseError values wrapping ErrInvalid, or read errors.
func Parse(r io.Reader, opts Options) (*tree.Tree, error) {
	p := &parser{opts: opts, links: make(map[*tree.Node]*pendingLink),
		keys: make(map[string]string), values: make(map[string][]byte)}
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("dumpfile: read: %w", err)
		}
		if len(line) == 0 {
			break
		}
		p.line++
		if line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		} else if opts.Strict {
			return nil, p.errf("Missing trailing newline")
		}
		if err := p.parseLine(line); err != nil {
			return nil, err
		}
		if err != nil { // EOF after an unterminated last line
			break
		}
	}
	if p.tree == nil {
		return nil, &ParseError{Msg: "No files in dump file"}
	}
	if err := p.resolveLinks(); err != nil {
		return nil, err
	}
	return p.tree, nil
}

type pendingLink struct {
	line   int
	dir    *tree.Node
	name   string
	target string
}

type parser struct {
	opts    Options
	line    int
	tree    *tree.Tree
	links   map[*tree.Node]*pendingLink // placeholder node -> link
	order   []*tree.Node                // placeholders in input order
	lastDir []byte                      // path of the last parent looked up
	lastDN  *tree.Node
	keys    map[string]string // interned xattr keys
	values  map[string][]byte // interned small xattr values
}

func (p *parser) errf(format string, args ...any) error {
	return &ParseError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// splitFields splits line into the 11 fixed fields and the xattr section.
func splitFields(line []byte) (f [numFields][]byte, xattrs []byte) {
	rest := line
	for i := 0; i < numFields; i++ {
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			f[i] = rest
			return f, nil
		}
		f[i] = rest[:j]
		rest = rest[j+1:]
	}
	return f, rest
}

func (p *parser) parseLine(line []byte) error {
	if len(line) == 0 {
		return p.errf("Invalid empty path")
	}
	if bytes.IndexByte(line, 0) >= 0 {
		return p.errf("NUL byte in line")
	}
	f, xs := splitFields(line)
	path, err := unescape(f[fPath])
	if err != nil {
		return p.errf("%v", err)
	}
	path = cString(path)
	if len(path) == 0 {
		return p.errf("Invalid empty path")
	}
	isRoot := len(path) == 1 && path[0] == '/'
	switch {
	case p.tree == nil && !isRoot:
		return p.errf("Root node not present")
	case p.tree != nil && isRoot:
		return p.errf("Can't have multiple roots")
	}
	if len(f[fMode]) > 0 && f[fMode][0] == '@' {
		if isRoot {
			return p.errf("Directories can't be hardlinked")
		}
		return p.parseHardLink(path, f)
	}
	n, err := p.parseNode(f, xs)
	if err != nil {
		return err
	}
	if isRoot {
		if !n.IsDir() {
			return p.errf("Root must be a directory")
		}
		p.tree = &tree.Tree{Root: n}
		return nil
	}
	dir, name, err := p.parentOf(path)
	if err != nil {
		return err
	}
	if err := dir.Insert(tree.Dirent{Name: string(name), Node: n}); err != nil {
		return p.errf("Can't add child %q: %v", path, err)
	}
	return nil
}

// parentOf resolves the parent directory of a non-root path and returns it
// with the final name, applying the reference's rules.
func (p *parser) parentOf(path []byte) (*tree.Node, []byte, error) {
	slash := bytes.LastIndexByte(path, '/')
	name := path[slash+1:]
	if string(name) == "." || string(name) == ".." {
		return nil, nil, p.errf("Invalid . or .. in path %q", path)
	}
	if len(name) == 0 || len(name) > tree.MaxNameLen {
		return nil, nil, p.errf("Can't add child %q", path)
	}
	dirPath := path[:max(slash, 0)]
	if p.lastDN != nil && bytes.Equal(dirPath, p.lastDir) {
		return p.lastDN, name, nil
	}
	dir := p.tree.Root
	for _, c := range bytes.Split(dirPath, []byte("/")) {
		if len(c) == 0 {
			continue
		}
		if !dir.IsDir() {
			return nil, nil, p.errf("Parent must be a directory for %q", path)
		}
		next := dir.Child(string(c))
		if next == nil || p.links[next] != nil {
			return nil, nil, p.errf("Parent directory missing for %q", path)
		}
		dir = next
	}
	if !dir.IsDir() {
		return nil, nil, p.errf("Parent must be a directory for %q", path)
	}
	p.lastDir = append(p.lastDir[:0], dirPath...)
	p.lastDN = dir
	return dir, name, nil
}

func (p *parser) parseMode(field []byte) (uint32, error) {
	v, ok := strtoull(field, 8)
	if !ok {
		return 0, p.errf("Invalid integer %q", field)
	}
	mode := uint32(v)
	if !tree.ValidType(mode) {
		return 0, p.errf("Invalid mode %o", mode)
	}
	return mode, nil
}

func (p *parser) parseHardLink(path []byte, f [numFields][]byte) error {
	mode, err := p.parseMode(f[fMode][1:])
	if err != nil {
		return err
	}
	if mode&tree.TypeMask == tree.TypeDir {
		return p.errf("Directories can't be hardlinked")
	}
	if string(f[fPayload]) == "-" {
		return p.errf("No target path for the hardlink")
	}
	target, err := unescape(f[fPayload])
	if err != nil {
		return p.errf("%v", err)
	}
	target = cString(target)
	dir, name, err := p.parentOf(path)
	if err != nil {
		return err
	}
	ph := &tree.Node{Mode: mode}
	if err := dir.Insert(tree.Dirent{Name: string(name), Node: ph, HardLink: true}); err != nil {
		return p.errf("Can't add child %q: %v", path, err)
	}
	p.links[ph] = &pendingLink{line: p.line, dir: dir, name: string(name), target: string(target)}
	p.order = append(p.order, ph)
	return nil
}

// resolveLinks points every hard-link entry at its final target. All
// targets are resolved before any entry changes, so a path through a link
// never resolves.
func (p *parser) resolveLinks() error {
	final := make(map[*tree.Node]*tree.Node, len(p.order))
	for _, ph := range p.order {
		if _, err := p.resolve(ph, final, 0); err != nil {
			return err
		}
	}
	for _, ph := range p.order {
		l := p.links[ph]
		if err := l.dir.Put(tree.Dirent{Name: l.name, Node: final[ph], HardLink: true}); err != nil {
			return &ParseError{Line: l.line, Msg: err.Error()}
		}
	}
	return nil
}

// resolve returns the final target of placeholder ph, memoized in final.
// A nil entry in final marks a link being resolved (a cycle if met again).
func (p *parser) resolve(ph *tree.Node, final map[*tree.Node]*tree.Node, depth int) (*tree.Node, error) {
	if n, ok := final[ph]; ok {
		if n == nil {
			return nil, &ParseError{Line: p.links[ph].line, Msg: "Too many levels of symbolic links (hard-link cycle)"}
		}
		return n, nil
	}
	l := p.links[ph]
	t, err := p.tree.Lookup(l.target)
	if err != nil {
		return nil, &ParseError{Line: l.line, Msg: fmt.Sprintf("No target at %q for hardlink", l.target)}
	}
	if t == ph {
		return nil, &ParseError{Line: l.line, Msg: fmt.Sprintf("Self-referential hardlink %q", l.target)}
	}
	if p.links[t] != nil {
		if depth > len(p.order) {
			return nil, &ParseError{Line: l.line, Msg: "Too many levels of symbolic links (hard-link cycle)"}
		}
		final[ph] = nil
		if t, err = p.resolve(t, final, depth+1); err != nil {
			return nil, err
		}
	}
	final[ph] = t
	return t, nil
}
