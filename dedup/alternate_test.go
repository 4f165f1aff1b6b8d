package dedup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

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
			opts := InsertOptions{Alternate: func(ctx context.Context, d Digest, n int64) (string, func(), bool) {
				return host, func() { released++ }, n == int64(size)
			}}
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
// the streamed bytes are stored instead.
func TestInsertAlternateWrongContent(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "store"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	liar := filepath.Join(dir, "liar")
	os.WriteFile(liar, []byte("different content, same size!"), 0o644)
	content := []byte("the real content, of same size")[:len("different content, same size!")]
	o, err := s.Insert(context.Background(), bytes.NewReader(content), InsertOptions{
		Alternate: func(context.Context, Digest, int64) (string, func(), bool) { return liar, nil, true },
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.Linked != LinkAuto {
		t.Fatalf("a mismatching alternate was linked (%v)", o.Linked)
	}
	got, err := os.ReadFile(s.Path(o.Digest))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("object content %q, %v", got, err)
	}
}
