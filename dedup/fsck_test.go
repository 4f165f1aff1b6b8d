package dedup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

// ingestLayer inserts the contents and commits them as layer id.
func ingestLayer(t *testing.T, s *Store, id string, datas ...[]byte) []Digest {
	t.Helper()
	ctx := context.Background()
	in, err := s.BeginIngest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ds []Digest
	for _, d := range datas {
		o, err := in.Insert(ctx, bytes.NewReader(d), InsertOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, o.Digest)
	}
	if err := in.Commit(ctx, id); err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestFsckCorruptionInjection(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{SmallThreshold: 4096})
	shared, only1, only2 := content(1, 10_000), content(2, 300), content(3, 5000)
	d1 := ingestLayer(t, s, "layer-a", shared, only1)
	d2 := ingestLayer(t, s, "layer-b", shared, only2)
	if rep, err := s.Fsck(ctx, FsckOptions{}); err != nil || !rep.Clean() || rep.Checked != 3 {
		t.Fatalf("fsck before damage: %+v %v", rep, err)
	}

	// Flip one byte of the shared object, delete layer-b's own object,
	// and drop a stray file among the objects.
	p := s.Path(d1[0])
	b, _ := os.ReadFile(p)
	b[4321] ^= 0x40
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(s.Path(d2[1]))
	os.MkdirAll(filepath.Join(s.ObjectsDir(), "ab"), 0o755)
	stray := filepath.Join(s.ObjectsDir(), "ab", "not-an-object")
	os.WriteFile(stray, nil, 0o644)

	rep, err := s.Fsck(ctx, FsckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Clean() || len(rep.Corrupt) != 1 || len(rep.Missing) != 1 || !slices.Equal(rep.Stray, []string{stray}) {
		t.Fatalf("report %+v", rep)
	}
	c := rep.Corrupt[0]
	if c.Digest != d1[0] || !slices.Equal(c.Layers, []string{"layer-a", "layer-b"}) {
		t.Fatalf("corrupt %+v, want %s used by layer-a, layer-b", c, d1[0])
	}
	m := rep.Missing[0]
	if m.Digest != d2[1] || !slices.Equal(m.Layers, []string{"layer-b"}) {
		t.Fatalf("missing %+v", m)
	}
	if len(rep.Quarantined) != 1 || s.Has(d1[0]) {
		t.Fatalf("repair did not quarantine: %v", rep.Quarantined)
	}
	if q, _ := os.ReadFile(rep.Quarantined[0]); !bytes.Equal(q, b) {
		t.Fatal("quarantined content differs from the corrupt object")
	}

	// Re-inserting the good contents heals the store.
	ingestLayer(t, s, "heal", shared, only2)
	os.Remove(stray)
	if rep, err := s.Fsck(ctx, FsckOptions{}); err != nil || !rep.Clean() {
		t.Fatalf("fsck after healing: %+v %v", rep, err)
	}
}

func TestFsckSample(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	var datas [][]byte
	for i := range 200 {
		datas = append(datas, content(uint64(i), 64))
	}
	ingestLayer(t, s, "l", datas...)
	rep, err := s.Fsck(ctx, FsckOptions{Sample: 0.25, Seed: 1})
	if err != nil || rep.Objects != 200 || rep.Checked < 20 || rep.Checked > 80 {
		t.Fatalf("sample 0.25 of 200: %+v %v", rep, err)
	}
}

func TestFsckBadRefs(t *testing.T) {
	s := openTest(t, Options{})
	ingestLayer(t, s, "l", content(1, 10))
	os.WriteFile(filepath.Join(s.Root(), dirRefs, "l"), []byte("garbage"), 0o644)
	rep, err := s.Fsck(context.Background(), FsckOptions{})
	if err != nil || !slices.Equal(rep.BadRefs, []string{"l"}) || rep.Clean() {
		t.Fatalf("%+v %v", rep, err)
	}
}

func TestVerityModes(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(filepath.Join(dir, "req"), Options{Verity: VerityRequire})
	s, aerr := Open(filepath.Join(dir, "auto"), Options{Verity: VerityAuto})
	if aerr != nil {
		t.Fatal(aerr)
	}
	defer s.Close()
	if err != nil {
		if !errors.Is(err, ErrVerityUnsupported) || !errors.Is(err, fsverity.ErrNotSupported) {
			t.Fatalf("require: %v", err)
		}
		if s.VerityEnabled() {
			t.Fatal("auto enabled fs-verity where require says it is unsupported")
		}
		return
	}
	// fs-verity works here: new objects must carry it.
	if !s.VerityEnabled() {
		t.Fatal("require works but auto did not enable fs-verity")
	}
	o, err := s.Insert(context.Background(), bytes.NewReader(content(1, 9000)), InsertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := s.Open(o.Digest)
	defer f.Close()
	if d, err := fsverity.Measure(f.Fd()); err != nil || Digest(d) != o.Digest {
		t.Fatalf("measure: %x %v", d, err)
	}
}
