package hostlink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestLargeDirTree commits a directory with enough entries that ostree's
// dirtree needs 2- and then 4-byte GVariant framing offsets (over 255
// bytes, over 64 KiB), and checks walk against `ostree ls` there too.
func TestLargeDirTree(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "ostree")
	tests := []struct {
		name  string
		files int
		want  int // bytes the dirtree must exceed
	}{
		{"2-byte offsets", 20, 0xff},
		{"4-byte offsets", 1800, 0xffff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src, repo := filepath.Join(dir, "src"), filepath.Join(dir, "repo")
			big := filepath.Join(src, "big")
			if err := os.MkdirAll(big, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tt.files; i++ {
				name := fmt.Sprintf("file-with-a-longish-name-%05d", i)
				if err := os.WriteFile(filepath.Join(big, name), []byte(name), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ostreeCmd(t, "init", "--repo="+repo, "--mode=bare-user")
			out := ostreeCmd(t, "commit", "--repo="+repo, "--branch=test", "--tree=dir="+src)
			commit, err := parseChecksum(strings.TrimSpace(out))
			if err != nil {
				t.Fatal(err)
			}
			r, err := OpenRepo(repo)
			if err != nil {
				t.Fatal(err)
			}
			got, entries := walkLs(t, r, commit)
			if want := ostreeLs(t, repo, "test"); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("Walk differs from ostree ls (%d vs %d lines)", len(got), len(want))
			}
			bigEntry := entries[1]
			st, err := os.Stat(r.objectPath(bigEntry.Checksum, objectDirTree))
			if err != nil {
				t.Fatal(err)
			}
			if bigEntry.Path != "/big" || st.Size() <= int64(tt.want) {
				t.Errorf("%s dirtree is %d bytes, want over %d", bigEntry.Path, st.Size(), tt.want)
			}
			if _, err := r.fileObjects(context.Background(), []checksum{commit}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
