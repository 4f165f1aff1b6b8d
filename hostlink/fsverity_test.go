package hostlink

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// fsverityHash is how the driver wires the store's digest into an Index.
func fsverityHash(r io.Reader) ([32]byte, error) {
	d, _, err := fsverity.Digest(r)
	return d, err
}

// TestIndexWithFSVerity runs the index with the real fs-verity digest
// (multi-block content included) instead of the SHA-256 stand-in.
func TestIndexWithFSVerity(t *testing.T) {
	objs := map[string]string{
		"small": "hello",
		"multi": strings.Repeat("0123456789abcdef", 4096*3/16+7), // > 3 blocks
		"other": strings.Repeat("x", 4096*3+7),                   // same size, other content
	}
	r, names := fakeRepo(t, objs)
	ix, err := NewIndex(context.Background(), r, IndexOptions{CacheDir: t.TempDir(), Hash: fsverityHash, HashName: "fsverity-sha256"})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for key, content := range objs {
		p, ok, err := ix.lookupDigest(context.Background(), int64(len(content)), fsverity.DigestBytes([]byte(content)))
		if err != nil || !ok || p != r.fileObjectPath(names[key]) {
			t.Errorf("%s: Lookup = %s, %v, %v", key, p, ok, err)
		}
	}
	data, err := os.ReadFile(r.fileObjectPath(names["multi"]))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ix.lookupDigest(context.Background(), int64(len(data)), sha256Of(data)); ok {
		t.Error("a SHA-256 matched as an fs-verity digest")
	}
}

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }
