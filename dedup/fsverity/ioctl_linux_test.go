package fsverity

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestKernel enables and measures fs-verity on a file in the test's
// temporary directory. Where the filesystem supports it, the kernel's
// measurement must equal the user-space digest; where it does not, both
// calls must report ErrNotSupported.
func TestKernel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	data := []byte("hello world")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, merr := Measure(f.Fd())
	err = Enable(f.Fd())
	if errors.Is(err, ErrNotSupported) {
		if !errors.Is(merr, ErrNotSupported) {
			t.Fatalf("Enable not supported but Measure gave %v", merr)
		}
		t.Logf("fs-verity unsupported here, as reported: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("Enable: %v", err)
	}
	if !errors.Is(merr, ErrNotEnabled) {
		t.Errorf("Measure before Enable: %v, want ErrNotEnabled", merr)
	}
	d, err := Measure(f.Fd())
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	if d != DigestBytes(data) {
		t.Errorf("kernel %s, user space %s", Hex(d), Hex(DigestBytes(data)))
	}
}
