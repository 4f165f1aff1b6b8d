package corpus

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestQuickCorpusReproducible builds the quick corpus twice and checks
// the OCI layouts are byte-identical (same manifests, so same layer
// digests), and that a second Load uses the cache.
func TestQuickCorpusReproducible(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "ostree")
	ctx := context.Background()
	var index [][]byte
	for i := range 2 {
		cache := filepath.Join(t.TempDir(), "cache")
		c, err := Load(ctx, Options{CacheDir: cache, Quick: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Images) != 5 || c.Images[3].Layers != 6 || c.Images[4].Layers != 21 {
			t.Fatalf("build %d: images %+v, want 5, the last two of 6 and 21 layers", i, c.Images)
		}
		b, err := os.ReadFile(filepath.Join(c.Path(c.Layout), "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		index = append(index, b)
		var progress bytes.Buffer
		again, err := Load(ctx, Options{CacheDir: cache, Quick: true, Progress: &progress})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(progress.Bytes(), []byte("cached in")) || again.Dir != c.Dir {
			t.Fatalf("second load did not use the cache: %s", progress.String())
		}
		if _, err := os.Stat(filepath.Join(c.Path(c.HostRepo), "refs", "heads", c.HostRef)); err != nil {
			t.Fatalf("host repo has no %s branch: %v", c.HostRef, err)
		}
	}
	if !bytes.Equal(index[0], index[1]) {
		t.Fatalf("two builds of the quick corpus differ:\n%s\n%s", index[0], index[1])
	}
}
