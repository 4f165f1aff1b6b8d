package dedup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// alternateFunc is an Alternate made of a function.
type alternateFunc func(ctx context.Context, d Digest, size int64, content io.ReaderAt) (Candidate, bool, error)

func (f alternateFunc) Find(ctx context.Context, d Digest, size int64, content io.ReaderAt) (Candidate, bool, error) {
	return f(ctx, d, size, content)
}

// found is an Alternate that finds path for every content.
func found(path string) Alternate {
	return alternateFunc(func(context.Context, Digest, int64, io.ReaderAt) (Candidate, bool, error) {
		return Candidate{Path: path}, true, nil
	})
}

func TestInsertAlternate(t *testing.T) {
	for _, size := range []int{100, 1 << 20} {
		t.Run(map[int]string{100: "small", 1 << 20: "large"}[size], func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(filepath.Join(dir, "store"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			content := bytes.Repeat([]byte("h"), size)
			host := filepath.Join(dir, "host-object")
			if err := os.WriteFile(host, content, 0o444); err != nil {
				t.Fatal(err)
			}
			var before unix.Stat_t
			unix.Stat(host, &before)
			released := 0
			opts := InsertOptions{Alternate: alternateFunc(func(ctx context.Context, d Digest, n int64, _ io.ReaderAt) (Candidate, bool, error) {
				return Candidate{Path: host, Release: func() { released++ }}, n == int64(size), nil
			})}
			o, err := s.Insert(context.Background(), bytes.NewReader(content), opts)
			if err != nil {
				t.Fatal(err)
			}
			if o.Linked != LinkHardlink || released != 1 {
				t.Fatalf("Linked = %v, released %d times; want a hard link to the alternate", o.Linked, released)
			}
			var obj, after unix.Stat_t
			unix.Stat(s.Path(o.Digest), &obj)
			unix.Stat(host, &after)
			if obj.Ino != before.Ino || after.Mode != before.Mode || after.Mtim != before.Mtim {
				t.Fatalf("object is not the host inode, or the host file changed: obj ino %d host ino %d mode %o→%o", obj.Ino, before.Ino, before.Mode, after.Mode)
			}
		})
	}
}

// An alternate whose content is not what the index claims is not used:
// the streamed bytes are stored instead. The difference may be anywhere,
// down to the last byte of a content larger than the buffers.
func TestInsertAlternateWrongContent(t *testing.T) {
	for name, size := range map[string]int{"small": 30, "large": 3<<20 + 5} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(filepath.Join(dir, "store"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			content := bytes.Repeat([]byte("0123456789"), size/10+1)[:size]
			lie := bytes.Clone(content)
			lie[size-1] ^= 1
			liar := filepath.Join(dir, "liar")
			os.WriteFile(liar, lie, 0o644)
			o, err := s.Insert(context.Background(), bytes.NewReader(content), InsertOptions{
				Alternate: found(liar),
			})
			if err != nil {
				t.Fatal(err)
			}
			if o.Linked != LinkAuto {
				t.Fatalf("a mismatching alternate was linked (%v)", o.Linked)
			}
			got, err := os.ReadFile(s.Path(o.Digest))
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("object content differs from the streamed content (%v)", err)
			}
		})
	}
}

// The content handed to Alternate reads the streamed bytes, in memory or
// in the temporary file.
func TestInsertAlternateSeesContent(t *testing.T) {
	for name, size := range map[string]int{"small": 100, "large": 1 << 20} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "store"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			content := bytes.Repeat([]byte("abc"), size/3+1)[:size]
			var seen []byte
			_, err = s.Insert(context.Background(), bytes.NewReader(content), InsertOptions{
				Alternate: alternateFunc(func(_ context.Context, _ Digest, n int64, r io.ReaderAt) (Candidate, bool, error) {
					seen = make([]byte, n)
					if m, err := r.ReadAt(seen, 0); m != int(n) {
						t.Errorf("ReadAt: %d bytes, %v", m, err)
					}
					return Candidate{}, false, nil
				}),
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(seen, content) {
				t.Fatalf("Alternate saw %d bytes differing from the %d streamed", len(seen), len(content))
			}
		})
	}
}

// A trusted alternate is linked without being read: only its size is
// checked, so one of another size is refused and the stream stored.
func TestInsertTrustedAlternate(t *testing.T) {
	dir := t.TempDir()
	content := []byte("content proven by the alternate's own checksum")
	same := filepath.Join(dir, "same")
	short := filepath.Join(dir, "short")
	os.WriteFile(same, content, 0o644)
	os.WriteFile(short, content[:10], 0o644)
	for i, c := range []struct {
		path   string
		linked bool
	}{{short, false}, {same, true}} {
		s, err := Open(filepath.Join(dir, "store", string(rune('a'+i))), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		o, err := s.Insert(context.Background(), bytes.NewReader(content), InsertOptions{
			TrustAlternate: true,
			Alternate:      found(c.path),
		})
		if err != nil {
			t.Fatal(err)
		}
		if linked := o.Linked == LinkHardlink; linked != c.linked {
			t.Fatalf("%s: Linked = %v, want linked %v", c.path, o.Linked, c.linked)
		}
	}
}

// Lookups that link nothing in are counted, across processes: declined
// (nothing found, or a file that cannot be linked in) and failed (with
// the latest error), and the stream is stored either way.
func TestAlternateStats(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	root := filepath.Join(dir, "store")
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("short"), 0o644)
	errLookup := errors.New("host index unreadable")
	insert := func(s *Store, i uint64, alt Alternate) {
		t.Helper()
		o, err := s.Insert(ctx, bytes.NewReader(content(i, 100)), InsertOptions{Alternate: alt, TrustAlternate: true})
		if err != nil || o.Linked != LinkAuto || o.Existed {
			t.Fatalf("insert %d: %+v, %v; want the stream written", i, o, err)
		}
	}
	a, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	insert(a, 1, alternateFunc(func(context.Context, Digest, int64, io.ReaderAt) (Candidate, bool, error) {
		return Candidate{}, false, nil
	}))
	insert(a, 2, found(short)) // size mismatch: declined, with the reason
	a.Close()
	b, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	insert(b, 3, alternateFunc(func(context.Context, Digest, int64, io.ReaderAt) (Candidate, bool, error) {
		return Candidate{}, false, errLookup
	}))
	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := AlternateStats{Declined: ModeCount{2, 200}, Failed: ModeCount{1, 100}, LastError: errLookup.Error()}
	if st.Alternates != want || st.ByMode[LinkWritten].Objects != 3 {
		t.Fatalf("stats %+v, want alternates %+v and 3 objects written", st, want)
	}
	insert(b, 4, found(short))
	if st, _ = b.Stats(ctx); !strings.Contains(st.Alternates.LastError, short) || st.Alternates.Declined.Objects != 3 {
		t.Fatalf("after a declined link: %+v", st.Alternates)
	}
}
