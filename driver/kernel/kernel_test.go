package kernel

import (
	"context"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

func TestFilesystemsListsProc(t *testing.T) {
	fs, err := Filesystems()
	if err != nil {
		t.Fatal(err)
	}
	// Every Linux kernel that runs a Go test has proc mounted.
	if !fs["proc"] {
		t.Fatalf("proc missing from parsed /proc/filesystems: %v", fs)
	}
}

func TestProbeFindsDataOnlyLower(t *testing.T) {
	testutil.RequireRoot(t)
	feat, err := Probe(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !feat.Erofs || !feat.Overlay {
		t.Fatalf("kernel lacks erofs or overlay: %+v", feat)
	}
	if !feat.DataOnlyLower {
		t.Fatalf("data-only lower probe failed: %v", feat.DataOnlyLowerErr)
	}
}
