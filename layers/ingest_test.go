package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/tree"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
)

func TestIngestEntryTypes(t *testing.T) {
	m := newMemContents()
	long := strings.Repeat("n", 200) + "/" + strings.Repeat("m", 200)
	capEntry := reg("bin/ping", "ping-binary-content")
	capEntry.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "SCHILY.xattr.user.note": "hi"}
	suid := reg("bin/su", "su-binary-content")
	suid.hdr.Mode = 0o4755
	suid.hdr.Uid, suid.hdr.Gid = 0, 0
	chr := entry{hdr: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}}
	blk := entry{hdr: tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8, Devminor: 0}}
	fifo := entry{hdr: tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}}
	suLink := hardlink("bin/su2", "bin/su")
	suLink.hdr.Mode = 0o4755
	tr := ingest(t, m,
		dir("bin/"), capEntry, suid, suLink,
		symlink("bin/sh", "/bin/bash"), reg("etc/tiny", "abc"), reg("etc/empty", ""),
		chr, blk, fifo, reg(long, "long name body"),
	)
	for p, want := range map[string]uint32{
		"bin": tree.TypeDir | 0o755, "bin/su": tree.TypeReg | 0o4755, "bin/sh": tree.TypeSymlink,
		"dev/null": tree.TypeChar | 0o666, "dev/sda": tree.TypeBlock | 0o660, "run/fifo": tree.TypeFifo | 0o600,
		"etc": tree.TypeDir | 0o755, long: tree.TypeReg | 0o644,
	} {
		n, err := tr.Lookup(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if n.Mode != want {
			t.Errorf("%s mode %o, want %o", p, n.Mode, want)
		}
	}
	ping, _ := tr.Lookup("bin/ping")
	if v, ok := ping.Xattr("security.capability"); !ok || string(v) != "\x01\x00\x00\x02" {
		t.Errorf("security.capability = %q, %v", v, ok)
	}
	if !ping.IsExternal() || m.puts == 0 {
		t.Errorf("19-byte file not stored externally with inline limit 8")
	}
	tiny, _ := tr.Lookup("etc/tiny")
	if tiny.IsExternal() || string(tiny.Content) != "abc" {
		t.Errorf("3-byte file not inline: %+v", tiny)
	}
	su, _ := tr.Lookup("bin/su")
	su2, _ := tr.Lookup("bin/su2")
	if su != su2 || su.Nlink != 2 {
		t.Errorf("hard link: same node %v, nlink %d", su == su2, su.Nlink)
	}
	null, _ := tr.Lookup("dev/null")
	if null.Rdev != 1<<8|3 {
		t.Errorf("dev/null rdev %#x", null.Rdev)
	}
}

func TestIngestWhiteoutsAndOpaque(t *testing.T) {
	m := newMemContents()
	tr := ingest(t, m, dir("a/"), reg("a/.wh.gone", ""), reg("b/.wh..wh..opq", ""), reg("b/new", "x"), reg(".wh..wh.plnk", ""))
	gone, err := tr.Lookup("a/gone")
	if err != nil || !gone.IsWhiteout() {
		t.Fatalf("a/gone is not a whiteout: %v %+v", err, gone)
	}
	b, _ := tr.Lookup("b")
	if !isOpaque(b) {
		t.Errorf("b is not opaque")
	}
	if tr.Root.Child(".wh..wh.plnk") != nil || tr.Root.NumEntries() != 2 {
		t.Errorf("AUFS metadata entry kept: %d root entries", tr.Root.NumEntries())
	}
}

func TestIngestDuplicatesReplace(t *testing.T) {
	m := newMemContents()
	d2 := dir("d/")
	d2.hdr.Mode = 0o700
	tr := ingest(t, m, dir("d/"), reg("d/f", "one"), d2, reg("f", "first"), reg("f", "second"), reg("l", "x"), symlink("l", "t"))
	d, _ := tr.Lookup("d")
	if d.Mode&0o777 != 0o700 || d.Child("f") == nil {
		t.Errorf("repeated dir entry: mode %o, child kept %v", d.Mode, d.Child("f") != nil)
	}
	f, _ := tr.Lookup("f")
	if string(f.Content) != "second" {
		t.Errorf("f = %q, want the later entry", f.Content)
	}
	l, _ := tr.Lookup("l")
	if l.Type() != tree.TypeSymlink {
		t.Errorf("l not replaced by the symlink")
	}
}

func TestIngestIDMapping(t *testing.T) {
	h := reg("f", "x")
	h.hdr.Uid, h.hdr.Gid = 5, 6
	opts := IngestOptions{MapIDs: func(u, g uint32) (uint32, uint32, error) {
		if u > 100 {
			return 0, 0, errors.New("unmapped")
		}
		return u + 100000, g + 200000, nil
	}}
	tr, _, err := Ingest(context.Background(), bytes.NewReader(mkTar(t, h)), newMemContents(), opts)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := tr.Lookup("f")
	if f.UID != 100005 || f.GID != 200006 {
		t.Errorf("mapped owner %d:%d", f.UID, f.GID)
	}
	h.hdr.Uid = 1000
	if _, _, err := Ingest(context.Background(), bytes.NewReader(mkTar(t, h)), newMemContents(), opts); err == nil {
		t.Error("unmappable owner accepted")
	}
}

func TestIngestAbsoluteAndDotPaths(t *testing.T) {
	tr := ingest(t, newMemContents(), reg("/abs/f", "a"), reg("./rel/g", "b"), reg("x/../y", "c"), dir("./"))
	for _, p := range []string{"abs/f", "rel/g", "y"} {
		if _, err := tr.Lookup(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// A whiteout below a path that this layer turned into a file hides
// nothing and is accepted, as overlay accepts it.
func TestIngestWhiteoutUnderFile(t *testing.T) {
	tr := ingest(t, newMemContents(), reg("a", "file now"), reg("a/.wh.x", ""))
	a, _ := tr.Lookup("a")
	if !a.IsRegular() {
		t.Fatalf("a is %o", a.Mode)
	}
}

func TestIngestHostile(t *testing.T) {
	bigName := strings.Repeat("d/", MaxPathLen/2+1) + "f"
	for _, tc := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"dotdot", []entry{reg("../etc/passwd", "x")}, "climbs above"},
		{"dotdot inside", []entry{reg("a/../../etc/passwd", "x")}, "climbs above"},
		{"hardlink outside", []entry{hardlink("l", "../../etc/shadow")}, "climbs above"},
		{"hardlink missing", []entry{hardlink("l", "etc/shadow")}, "not in this layer"},
		{"hardlink to dir", []entry{dir("d/"), hardlink("l", "d")}, "directory"},
		{"file under symlink", []entry{symlink("a", "/etc"), reg("a/passwd", "x")}, "not a directory"},
		{"overlay xattr", []entry{func() entry {
			e := dir("d/")
			e.hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}
			return e
		}()}, "reserved"},
		{"whiteout of dotdot", []entry{reg("a/.wh...", "")}, "invalid name"},
		{"empty whiteout", []entry{reg("a/.wh.", "")}, "invalid name"},
		{"root as file", []entry{reg(".", "")}, "root must be a directory"},
		{"path too long", []entry{reg(bigName, "")}, "longer than"},
		{"empty symlink", []entry{symlink("s", "")}, "symlink target"},
		{"long symlink", []entry{symlink("s", strings.Repeat("t", 4096))}, "symlink target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Ingest(context.Background(), bytes.NewReader(mkTar(t, tc.entries...)), newMemContents(), IngestOptions{})
			if !errors.Is(err, ErrInvalidTar) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidTar mentioning %q", err, tc.want)
			}
		})
	}
}

func TestIngestCorruptStreams(t *testing.T) {
	good := mkTar(t, reg("f", strings.Repeat("z", 3000)), reg("g", "small"))
	badSum := bytes.Clone(good)
	badSum[148] ^= 0x1 // header checksum field
	for name, data := range map[string][]byte{
		"truncated header":  good[:300],
		"truncated content": good[:512+1000],
		"bad checksum":      badSum,
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Ingest(context.Background(), bytes.NewReader(data), newMemContents(), IngestOptions{})
			if err == nil {
				t.Fatal("corrupt stream accepted")
			}
		})
	}
}

func TestIngestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := Ingest(ctx, bytes.NewReader(mkTar(t, reg("f", "x"))), newMemContents(), IngestOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestIngestSparse(t *testing.T) {
	// A PAX 1.0 sparse file (what GNU tar --sparse writes): archive/tar
	// cannot write one, so the blocks are built by hand. The data section
	// starts with the sparse map (1 region: offset 16, length 4).
	sparseMap := "1\n16\n4\n"
	body := sparseMap + strings.Repeat("\x00", 512-len(sparseMap)) + "DATA"
	pax := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", "sparse") + paxRecord("GNU.sparse.realsize", "20")
	var raw bytes.Buffer
	raw.Write(tarfix.RawHeader("PaxHeaders/sparse", 'x', len(pax)))
	raw.Write(tarfix.Pad512(pax))
	raw.Write(tarfix.RawHeader("GNUSparseFile.0/sparse", '0', len(body)))
	raw.Write(tarfix.Pad512(body))
	raw.Write(make([]byte, 1024))
	m := newMemContents()
	tr, _, err := Ingest(context.Background(), &raw, m, IngestOptions{InlineLimit: 8})
	if err != nil {
		t.Fatal(err)
	}
	n, err := tr.Lookup("sparse")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("\x00", 16) + "DATA"
	rc, err := m.open(n)
	if err != nil {
		t.Fatalf("sparse file not external: %+v (%v)", n, err)
	}
	got := new(bytes.Buffer)
	got.ReadFrom(rc)
	if n.Size != 20 || got.String() != want {
		t.Errorf("sparse file: size %d content %q, want %q", n.Size, got.String(), want)
	}
}

func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec)
	for len(fmt.Sprint(n))+len(rec) != n {
		n = len(fmt.Sprint(n)) + len(rec)
	}
	return fmt.Sprint(n) + rec
}

// A hard link entry's metadata lands on the inode it shares, as
// containers/storage's extraction (and so the overlay driver) does.
func TestIngestHardlinkMetadataWins(t *testing.T) {
	link := hardlink("b", "a")
	link.hdr.Mode, link.hdr.Uid = 0o600, 7
	link.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v"}
	tr := ingest(t, newMemContents(), reg("a", "content"), link)
	a, _ := tr.Lookup("a")
	if a.Mode != tree.TypeReg|0o600 || a.UID != 7 {
		t.Fatalf("a = %o uid %d after link with mode 0600 uid 7", a.Mode, a.UID)
	}
	if v, ok := a.Xattr("user.k"); !ok || string(v) != "v" {
		t.Fatalf("link xattr not applied: %q %v", v, ok)
	}
}

// With workers, contents are stored concurrently but the tree is the
// same as a sequential ingest's; a store error still fails the ingest
// and names the entry.
func TestIngestWorkers(t *testing.T) {
	var entries []entry
	for i := 0; i < 200; i++ {
		entries = append(entries, reg(fmt.Sprintf("d%d/f%d", i%7, i), strings.Repeat(fmt.Sprintf("content %d ", i%50), 40+i)))
	}
	entries = append(entries, hardlink("link", "d3/f3"), reg(".wh.gone", ""))
	data := mkTar(t, entries...)
	seqM, parM := newMemContents(), newMemContents()
	seq, _, err := Ingest(context.Background(), bytes.NewReader(data), seqM, IngestOptions{InlineLimit: 8})
	if err != nil {
		t.Fatal(err)
	}
	par, _, err := Ingest(context.Background(), bytes.NewReader(data), parM, IngestOptions{InlineLimit: 8, Workers: 4, BufferLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := listing(t, seq, seqM), listing(t, par, parM); a != b {
		t.Fatalf("parallel ingest differs:\n%s\n---\n%s", a, b)
	}
	_, _, err = Ingest(context.Background(), bytes.NewReader(data), failingContents{}, IngestOptions{InlineLimit: 8, Workers: 4})
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "entry \"d") {
		t.Fatalf("store error with workers: %v", err)
	}
}

type failingContents struct{}

func (failingContents) Put(ctx context.Context, r io.Reader, size int64) (Object, error) {
	return Object{}, errors.New("disk full")
}

// TestIngestWhiteoutThenSameDir: a layer that whites out a directory and
// then puts a directory of the same name (with or without an entry of
// its own) shows only its own entries there: whiteouts apply to lower
// layers, so the new directory hides the lower one's entries.
func TestIngestWhiteoutThenSameDir(t *testing.T) {
	for name, entries := range map[string][]entry{
		"dir entry":    {reg(".wh.w", ""), dir("w/"), reg("w/new", "n")},
		"implied dir":  {reg(".wh.w", ""), reg("w/new", "n")},
		"nested whout": {reg("a/.wh.w", ""), reg("a/w/new", "n")},
	} {
		t.Run(name, func(t *testing.T) {
			m := newMemContents()
			prefix := ""
			if name == "nested whout" {
				prefix = "a/"
			}
			lower := ingest(t, m, dir(prefix+"w/"), reg(prefix+"w/old", "o"))
			layer := ingest(t, m, entries...)
			w, err := layer.Lookup(prefix + "w")
			if err != nil || !w.IsDir() || !isOpaque(w) {
				t.Fatalf("%sw in the layer: %v, dir %v, opaque %v; want an opaque directory", prefix, err, w != nil && w.IsDir(), w != nil && isOpaque(w))
			}
			if err := Merge(lower, layer); err != nil {
				t.Fatal(err)
			}
			got, _ := lower.Lookup(prefix + "w")
			var names []string
			for _, e := range got.Entries() {
				names = append(names, e.Name)
			}
			if strings.Join(names, ",") != "new" {
				t.Errorf("merged %sw holds %v, want [new] only", prefix, names)
			}
		})
	}
}

// TestIngestWhiteoutOfOwnEntryRefused: a whiteout naming what the same
// layer added earlier cannot be exported again as pulled; it is refused
// with an error naming the path, as the overlay driver refuses it.
func TestIngestWhiteoutOfOwnEntryRefused(t *testing.T) {
	for name, entries := range map[string][]entry{
		"file under whited-out dir": {dir("w2/"), reg("w2/new", "n"), reg(".wh.w2", "")},
		"implied dir whited out":    {reg("w2/new", "n"), reg(".wh.w2", "")},
		"hard link to whited-out":   {reg("t", "target content"), hardlink("l", "t"), reg(".wh.t", "")},
		"file whited out":           {reg("t", "x"), reg(".wh.t", "")},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Ingest(context.Background(), bytes.NewReader(mkTar(t, entries...)), newMemContents(), IngestOptions{InlineLimit: 8})
			if !errors.Is(err, ErrInvalidTar) || !strings.Contains(err.Error(), "same layer") {
				t.Fatalf("Ingest = %v, want ErrInvalidTar about the same layer", err)
			}
		})
	}
	// Whiting out a name twice, or a lower name, stays accepted.
	ingest(t, newMemContents(), reg(".wh.x", ""), reg(".wh.x", ""), reg("d/.wh.y", ""))
}
