package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// memContents is an in-memory Contents for unit tests: objects named by
// the sha256 of their content (the real store uses fs-verity digests).
type memContents struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    int
}

func newMemContents() *memContents { return &memContents{objects: map[string][]byte{}} }

func (m *memContents) Put(ctx context.Context, r io.Reader, size int64) (Object, error) {
	data, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return Object{}, err
	}
	if int64(len(data)) != size {
		return Object{}, fmt.Errorf("short content: %d of %d bytes", len(data), size)
	}
	sum := sha256.Sum256(data)
	name := hex.EncodeToString(sum[:])
	m.mu.Lock()
	m.puts++
	m.objects[name[:2]+"/"+name[2:]] = data
	m.mu.Unlock()
	return Object{Payload: name[:2] + "/" + name[2:], Digest: sum}, nil
}

func (m *memContents) open(n *tree.Node) (io.ReadCloser, error) {
	m.mu.Lock()
	data, ok := m.objects[n.Payload]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no object %s", n.Payload)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// entry is one tar entry for a test archive.
type entry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}, body}
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1700000000, 0)}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, ModTime: time.Unix(1700000000, 0)}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}}
}

func mkTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("write header %s: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ingest(t testing.TB, m *memContents, entries ...entry) *tree.Tree {
	t.Helper()
	tr, _, err := Ingest(context.Background(), bytes.NewReader(mkTar(t, entries...)), m, IngestOptions{InlineLimit: 8})
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	return tr
}

// listing renders a tree one line per entry, with the content of regular
// files resolved through m, so that two trees compare as text.
func listing(t testing.TB, tr *tree.Tree, m *memContents) string {
	t.Helper()
	var lines []string
	err := tr.Walk(func(p string, d tree.Dirent) error {
		n := d.Node
		var xs []string
		for _, x := range n.Xattrs {
			xs = append(xs, x.Name+"="+string(x.Value))
		}
		sort.Strings(xs)
		line := fmt.Sprintf("%s %o %d:%d nlink=%d mtime=%d", p, n.Mode, n.UID, n.GID, n.Nlink, n.Mtime.Sec)
		switch {
		case n.IsRegular():
			content := string(n.Content)
			if n.IsExternal() {
				rc, err := m.open(n)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				b, _ := io.ReadAll(rc)
				content = "ext:" + string(b)
			}
			line += fmt.Sprintf(" size=%d %q", n.Size, content)
		case n.Type() == tree.TypeSymlink:
			line += " -> " + n.Target
		case n.Type() == tree.TypeChar || n.Type() == tree.TypeBlock:
			line += fmt.Sprintf(" rdev=%d", n.Rdev)
		}
		if len(xs) > 0 {
			line += " " + strings.Join(xs, ",")
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

func entryOf(t testing.TB, name string, typ byte, major, minor int64) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: typ, Mode: 0o600, Devmajor: major, Devminor: minor}}
}

// listingNoMtime is listing without mtimes: a tar header keeps whole
// seconds only.
func listingNoMtime(t testing.TB, tr *tree.Tree, m *memContents) string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(listing(t, tr, m), "\n") {
		fields := strings.Fields(l)
		kept := fields[:0]
		for _, f := range fields {
			if !strings.HasPrefix(f, "mtime=") {
				kept = append(kept, f)
			}
		}
		out = append(out, strings.Join(kept, " "))
	}
	return strings.Join(out, "\n")
}
