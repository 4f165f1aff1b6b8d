package dedup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
)

// TestForEachSHA256 checks that every object is reported with the SHA-256
// of its content, and that objects stored without one are hashed and
// recorded.
func TestForEachSHA256(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	want := map[SHA256]Digest{}
	for i, n := range []int{100, 4096, 70_000} {
		data := content(uint64(i), n)
		o, err := s.Insert(ctx, bytes.NewReader(data), InsertOptions{NoSHA256: i != 0})
		if err != nil {
			t.Fatal(err)
		}
		want[SHA256(sha256.Sum256(data))] = o.Digest
	}
	if _, ok := s.LookupSHA256(SHA256(sha256.Sum256(content(1, 4096)))); ok {
		t.Fatal("an object inserted with NoSHA256 is already indexed")
	}
	got := map[SHA256]Digest{}
	if err := s.ForEachSHA256(ctx, func(sha SHA256, d Digest) error {
		if _, dup := got[sha]; dup {
			t.Errorf("%s reported twice", sha)
		}
		got[sha] = d
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("reported %d objects, want %d", len(got), len(want))
	}
	for sha, d := range want {
		if got[sha] != d {
			t.Errorf("%s: reported %s, want %s", sha, got[sha], d)
		}
		if l, ok := s.LookupSHA256(sha); !ok || l != d {
			t.Errorf("%s: not indexed after ForEachSHA256 (%s, %v)", sha, l, ok)
		}
	}
}
