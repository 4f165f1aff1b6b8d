package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOverlayOptions(t *testing.T) {
	tests := []struct {
		o    Overlay
		want string
	}{
		{Overlay{Lower: []string{"/a"}}, "lowerdir=/a,metacopy=on,redirect_dir=on"},
		{Overlay{Lower: []string{"/a", "/b"}, DataLower: []string{"/d"}}, "lowerdir=/a:/b::/d,metacopy=on,redirect_dir=on"},
		{Overlay{Lower: []string{"/a"}, DataLower: []string{"/d"}, Upper: "/u", Work: "/w"},
			"lowerdir=/a::/d,metacopy=on,redirect_dir=on,upperdir=/u,workdir=/w"},
	}
	for _, tc := range tests {
		if got := tc.o.Options(); got != tc.want {
			t.Errorf("%+v.Options() = %q, want %q", tc.o, got, tc.want)
		}
	}
}

func TestMountCleanupUnmounts(t *testing.T) {
	RequireRoot(t)
	// A space, which the mount table escapes as \040.
	target := filepath.Join(t.TempDir(), "with space")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Run("mounts", func(t *testing.T) {
		Mount(t, "tmpfs", target, "tmpfs", 0, "size=1m")
		if err := os.WriteFile(filepath.Join(target, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if ok, err := MountedAt(target); err != nil || !ok {
			t.Fatalf("tmpfs not mounted at %s: %v", target, err)
		}
	})
	// The subtest's cleanup has run: the mount is gone and so is its file.
	if ok, err := MountedAt(target); err != nil || ok {
		t.Fatalf("mount at %s survived its test's cleanup (err %v)", target, err)
	}
	if _, err := os.Stat(filepath.Join(target, "f")); !os.IsNotExist(err) {
		t.Fatalf("file written on the tmpfs visible after unmount: %v", err)
	}
}
