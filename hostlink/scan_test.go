package hostlink

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestScanRemembered checks the cheap pass reuses its previous result:
// unchanged directories are not listed, changed ones stat only new names,
// removed objects disappear, and a damaged state file means a full pass.
func TestScanRemembered(t *testing.T) {
	dir := t.TempDir()
	writeSyntheticObjects(t, dir, 1000)
	ageDirs(t, dir)
	objects := filepath.Join(dir, "objects")
	ctx := context.Background()

	first, c, err := scanFileObjects(ctx, objects, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.dirsListed != 256 || c.statted != 1000 || len(first.objects()) != 1000 {
		t.Fatalf("first pass: %+v, %d objects", c, len(first.objects()))
	}
	// Round trip through the state file format.
	enc := first.marshal()
	prev, ok := unmarshalScanState(enc)
	if !ok || !bytes.Equal(prev.marshal(), enc) {
		t.Fatal("scan state does not round-trip")
	}

	// Nothing changed: nothing listed, nothing stat'ed.
	second, c, err := scanFileObjects(ctx, objects, prev)
	if err != nil {
		t.Fatal(err)
	}
	if c.dirsListed != 0 || c.statted != 0 || len(second.objects()) != 1000 {
		t.Fatalf("unchanged pass: %+v, %d objects", c, len(second.objects()))
	}

	// Add one object and remove another in directory "ab": that
	// directory alone is listed, and only the new object stat'ed.
	var victim checksum
	for _, o := range first.dirs["ab"].objs {
		victim = o.sum
		break
	}
	if err := os.Remove(filepath.Join(objects, "ab", victim.String()[2:]+".file")); err != nil {
		t.Fatal(err)
	}
	added := checksum{0xab, 1, 2, 3}
	if err := os.WriteFile(filepath.Join(objects, "ab", added.String()[2:]+".file"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	third, c, err := scanFileObjects(ctx, objects, second)
	if err != nil {
		t.Fatal(err)
	}
	if c.dirsListed != 1 || c.statted != 1 {
		t.Errorf("changed pass: %+v, want 1 directory listed and 1 stat", c)
	}
	has := map[checksum]int64{}
	for _, o := range third.objects() {
		has[o.sum] = o.size
	}
	if _, ok := has[victim]; ok || has[added] != 3 || len(has) != 1000 {
		t.Errorf("changed pass: victim present %v, added size %d, %d objects", ok, has[added], len(has))
	}

	// The changed directory is within racyWindow: listed again next time
	// even though unchanged, since its mtime proves nothing yet.
	_, c, err = scanFileObjects(ctx, objects, third)
	if err != nil {
		t.Fatal(err)
	}
	if c.dirsListed != 1 || c.statted != 0 {
		t.Errorf("racy pass: %+v, want the fresh directory listed again, nothing stat'ed", c)
	}
}

func TestScanStateDamaged(t *testing.T) {
	s := &scanState{dev: 1, ino: 2, dirs: map[string]*dirScan{
		"ab": {mtime: 3, ino: 4, objs: []objectStat{{sum: checksum{1}, size: 5, mtime: 6}}},
	}}
	good := s.marshal()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-5]},
		{"flipped", func() []byte { b := bytes.Clone(good); b[30] ^= 1; return b }()},
		{"bad magic", append([]byte("XXXX"), good[4:]...)},
	}
	for _, tt := range tests {
		if _, ok := unmarshalScanState(tt.data); ok {
			t.Errorf("%s: damaged scan state accepted", tt.name)
		}
	}
}

// TestIndexUsesRememberedScan checks a second Index over an unchanged
// repository lists no directory and stats no object.
func TestIndexUsesRememberedScan(t *testing.T) {
	r, _ := fakeRepo(t, sampleObjects)
	old := time.Now().Add(-time.Hour)
	dirs, _ := filepath.Glob(filepath.Join(r.path, "objects", "*"))
	for _, d := range dirs {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	cacheDir := t.TempDir()
	h := &countingHash{}
	if s := newTestIndex(t, r, cacheDir, h).stats(); s.Statted != len(sampleObjects) {
		t.Fatalf("first index: %+v", s)
	}
	if s := newTestIndex(t, r, cacheDir, h).stats(); s.DirsListed != 0 || s.Statted != 0 || s.Objects != len(sampleObjects) {
		t.Fatalf("second index: %+v", s)
	}
}

// FuzzScanState feeds arbitrary bytes to the scan state decoder: errors
// are fine, panics are bugs, and what decodes re-encodes identically.
func FuzzScanState(f *testing.F) {
	f.Add((&scanState{dev: 1, ino: 2, dirs: map[string]*dirScan{
		"ab": {mtime: 3, ino: 4, objs: []objectStat{{sum: checksum{1}, size: 5, mtime: 6}}},
	}}).marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		s, ok := unmarshalScanState(data)
		if !ok {
			return
		}
		if _, ok := unmarshalScanState(s.marshal()); !ok {
			t.Fatal("re-encoded scan state does not decode")
		}
	})
}
