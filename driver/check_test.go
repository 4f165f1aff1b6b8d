package driver

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
)

// flipByte flips one bit of the file at offset (from the end if < 0).
func flipByte(t *testing.T, path string, offset int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if offset < 0 {
		offset += int64(len(data))
	}
	data[offset] ^= 0x10
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckImagesFindsDamage(t *testing.T) {
	c := newTestCore(t)
	ctx := context.Background()
	applyLayer(t, c, "base", "", mustTar(t, tarfix.File("f", strings.Repeat("base ", 100))))
	applyLayer(t, c, "top", "base", mustTar(t, tarfix.File("g", strings.Repeat("top ", 100))))
	for _, id := range []string{"base", "top"} {
		if err := c.ensureFlat(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := c.CheckImages(ctx, false); err != nil || len(p) != 0 {
		t.Fatalf("healthy store: %v %v", p, err)
	}
	flipByte(t, c.diffImage("base"), 1100)     // the superblock
	flipByte(t, c.flatImage("top"), -1)        // the last byte
	os.Remove(c.flatImage("base") + ".digest") // a lost digest
	problems, err := c.CheckImages(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]ImageProblem{}
	for _, p := range problems {
		found[p.Path] = p
	}
	if p, ok := found[c.diffImage("base")]; !ok || p.Repaired || !strings.Contains(p.Detail, "pull its image again") {
		t.Errorf("damaged diff image of base: %+v (found %v)", p, ok)
	}
	if p, ok := found[c.flatImage("top")]; !ok || !p.Repaired {
		t.Errorf("damaged flattened image of top: %+v (found %v)", p, ok)
	}
	if p, ok := found[c.flatImage("base")]; !ok || !strings.Contains(p.Detail, "no recorded digest") {
		t.Errorf("flattened image of base without digest: %+v (found %v)", p, ok)
	}
	if len(problems) != 3 {
		t.Errorf("%d problems, want 3: %+v", len(problems), problems)
	}
	// The repaired cache is rebuilt on the next mount, with a good digest.
	if err := c.ensureFlat(ctx, "top"); err != nil {
		t.Fatal(err)
	}
	if err := checkImage(c.flatImage("top")); err != nil {
		t.Fatalf("rebuilt flattened image: %v", err)
	}
}
