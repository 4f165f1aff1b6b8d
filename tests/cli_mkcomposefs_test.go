package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDropInMkcomposefs runs cfs-storage through a link named mkcomposefs
// found on $PATH, as c/storage's composefs mode runs libcomposefs' tool
// (`mkcomposefs --from-file - -`, dump on stdin, image on stdout), on a
// dump in the form c/storage writes (a symlink's SIZE is 0, which only
// lenient parsing accepts): without CFS_PARSE_STRICT it must build the
// image, with it set refuse, as the reference does.
func TestDropInMkcomposefs(t *testing.T) {
	cli, _ := buildBinaries(t)
	bin := t.TempDir()
	if err := os.Symlink(cli, filepath.Join(bin, "mkcomposefs")); err != nil {
		t.Fatal(err)
	}
	dump := "/ 0 40755 3 0 0 0 0.0 - - -\n" +
		"/etc 0 40755 2 0 0 0 0.0 - - -\n" +
		"/etc/os-release 21 100644 1 0 0 0 0.0 - ID=debian\\x0aVERSION=12\\x0a -\n" +
		"/lib 0 120777 1 0 0 0 0.0 usr/lib - -\n"
	mk := func(env ...string) ([]byte, string, error) {
		path, err := exec.LookPath(filepath.Join(bin, "mkcomposefs"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(path, "--from-file", "-", "-")
		cmd.Env = append(filterEnv(os.Environ(), "CFS_PARSE_STRICT="), env...)
		cmd.Stdin = strings.NewReader(dump)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err = cmd.Run()
		return out.Bytes(), errOut.String(), err
	}
	img, stderr, err := mk()
	if err != nil {
		t.Fatalf("mkcomposefs --from-file - -: %v\n%s", err, stderr)
	}
	if len(img) < 4096 || !bytes.Equal(img[1024:1028], []byte{0xe2, 0xe1, 0xf5, 0xe0}) {
		t.Fatalf("stdout is not an EROFS image (%d bytes)", len(img))
	}
	if _, stderr, err := mk("CFS_PARSE_STRICT=1"); err == nil {
		t.Fatal("CFS_PARSE_STRICT=1: a symlink of SIZE 0 was accepted")
	} else if !strings.Contains(stderr, "symlink") {
		t.Errorf("CFS_PARSE_STRICT=1: error does not name the symlink: %s", stderr)
	}
}

// filterEnv drops the variables of env that start with prefix.
func filterEnv(env []string, prefix string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}
