package dumpfile

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

const root = "/ 0 40755 2 0 0 0 0.0 - - -\n"

// parseCases are dumpfiles with the dump they print as (want) or the
// error message they must be rejected with (err, a substring).
var parseCases = []struct {
	name   string
	in     string
	strict bool
	want   string
	err    string
}{
	{name: "empty input", in: "", err: "No files in dump file"},
	{name: "no root", in: "/a 0 100644 1 0 0 0 0.0 - - -\n", err: "Root node not present"},
	{name: "two roots", in: root + root, err: "Can't have multiple roots"},
	{name: "root not dir", in: "/ 0 100644 1 0 0 0 0.0 - - -\n", err: "Root must be a directory"},
	{name: "empty line", in: root + "\n", err: "Invalid empty path"},
	{name: "nul byte", in: root + "/a\x00 0 100644 1 0 0 0 0.0 - - -\n", err: "NUL"},
	{name: "missing newline strict", in: strings.TrimSuffix(root, "\n"), strict: true, err: "Missing trailing newline"},
	{name: "missing newline lenient", in: strings.TrimSuffix(root, "\n"), want: "/ 0 40755 2 0 0 0 0.0 - - -\n"},
	{name: "escaped root", in: `\x2f 0 40755 2 0 0 0 0.0 - - -` + "\n", want: root},
	{name: "slashes ignored", in: root + "//a 0 100644 1 0 0 0 0.0 - - -\n", want: root + "/a 0 100644 1 0 0 0 0.0 - - -\n"},
	{name: "trailing slash", in: root + "/a/ 0 40755 2 0 0 0 0.0 - - -\n", err: "Can't add child"},
	{name: "dot component", in: root + "/./a 0 100644 1 0 0 0 0.0 - - -\n", err: "Parent directory missing"},
	{name: "parent not dir", in: root + "/a 0 100644 1 0 0 0 0.0 - - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n", err: "Parent must be a directory"},
	{name: "duplicate", in: root + "/a 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n", err: "Can't add child"},
	{name: "long name", in: root + "/" + strings.Repeat("n", 256) + " 0 100644 1 0 0 0 0.0 - - -\n", err: "Can't add child"},
	{name: "max name", in: root + "/" + strings.Repeat("n", 255) + " 0 100644 1 0 0 0 0.0 - - -\n", want: root + "/" + strings.Repeat("n", 255) + " 0 100644 1 0 0 0 0.0 - - -\n"},
	{name: "bad escape", in: root + `/a\q 0 100644 1 0 0 0 0.0 - - -` + "\n", err: "Unsupported escape type q"},
	{name: "lone backslash", in: root + `/a\ 0 100644 1 0 0 0 0.0 - - -` + "\n", err: "No character after escape"},
	{name: "short hex", in: root + `/a\x4 0 100644 1 0 0 0 0.0 - - -` + "\n", err: "No hex characters"},
	{name: "bad hex", in: root + `/a\xg1 0 100644 1 0 0 0 0.0 - - -` + "\n", err: "Invalid hex characters"},
	{name: "escapes printed", in: root + `/a\x20b\t=\xff 0 100644 1 0 0 0 0.0 - - -` + "\n", want: root + `/a\x20b\t=\xff 0 100644 1 0 0 0 0.0 - - -` + "\n"},
	{name: "path truncated at nul", in: root + `/ab\x00cd 0 100644 1 0 0 0 0.0 - - -` + "\n", want: root + "/ab 0 100644 1 0 0 0 0.0 - - -\n"},
	{name: "bad size", in: root + "/a x 100644 1 0 0 0 0.0 - - -\n", err: "Invalid integer"},
	{name: "number whitespace and sign", in: root + "/a \t+0 100644 1 0 0 0 -1.4294967297 - - -\n", want: root + "/a 0 100644 1 0 0 0 -1.1 - - -\n"},
	{name: "saturating uid", in: root + "/a 0 100644 1 99999999999999999999999 0 0 0.0 - - -\n", want: root + "/a 0 100644 1 4294967295 0 0 0.0 - - -\n"},
	{name: "mtime without dot", in: root + "/a 0 100644 1 0 0 0 5 - - -\n", err: "Invalid mtime"},
	{name: "bad gid uid 0", in: root + "/a 0 100644 1 0 x 0 0.0 - - -\n", err: "Invalid integer"},
	{name: "bad gid uid 1", in: root + "/a 0 100644 1 1 x y 0.0 - - -\n", want: root + "/a 0 100644 1 1 0 0 0.0 - - -\n"},
	{name: "invalid mode", in: root + "/a 0 170644 1 0 0 0 0.0 - - -\n", err: "Invalid mode"},
	{name: "rdev on file lenient", in: root + "/a 0 100644 1 0 0 5 0.0 - - -\n", want: root + "/a 0 100644 1 0 0 0 0.0 - - -\n"},
	{name: "rdev on file strict", in: root + "/a 0 100644 1 0 0 5 0.0 - - -\n", strict: true, err: "Non-zero devnum"},
	{name: "device", in: root + "/c 0 20666 1 0 0 259 0.0 - - -\n", strict: true, want: root + "/c 0 20666 1 0 0 259 0.0 - - -\n"},
	{name: "rdev truncated", in: root + "/c 0 20666 1 0 0 4294967297 0.0 - - -\n", want: root + "/c 0 20666 1 0 0 1 0.0 - - -\n"},
	{name: "symlink", in: root + "/l 7 120777 1 0 0 0 0.0 /target - -\n", strict: true, want: root + "/l 7 120777 1 0 0 0 0.0 /target - -\n"},
	{name: "symlink size lenient", in: root + "/l 1 120777 1 0 0 0 0.0 /target - -\n", want: root + "/l 7 120777 1 0 0 0 0.0 /target - -\n"},
	{name: "symlink size strict", in: root + "/l 1 120777 1 0 0 0 0.0 /target - -\n", strict: true, err: "Invalid symlink size"},
	{name: "symlink content strict", in: root + "/l 3 120777 1 0 0 0 0.0 abc abc -\n", strict: true, err: "Symlink cannot have content"},
	{name: "symlink no target", in: root + "/l 0 120777 1 0 0 0 0.0 - - -\n", err: "Invalid symlink"},
	{name: "symlink 4095", in: root + "/l 4095 120777 1 0 0 0 0.0 " + strings.Repeat("t", 4095) + " - -\n", strict: true, want: root + "/l 4095 120777 1 0 0 0 0.0 " + strings.Repeat("t", 4095) + " - -\n"},
	{name: "symlink 4096", in: root + "/l 4096 120777 1 0 0 0 0.0 " + strings.Repeat("t", 4096) + " - -\n", err: "Invalid symlink"},
	{name: "payload 4096", in: root + "/f 5 100644 1 0 0 0 0.0 " + strings.Repeat("p", 4096) + " - -\n", err: "Invalid payload"},
	{name: "content size mismatch", in: root + "/f 5 100644 1 0 0 0 0.0 - abc -\n", err: "Invalid content size"},
	{name: "content on dir", in: root + "/d 2 40755 2 0 0 0 0.0 - ab -\n", want: root + "/d 2 40755 2 0 0 0 0.0 - - -\n"},
	{name: "content too big", in: root + "/f 5001 100644 1 0 0 0 0.0 - " + strings.Repeat("c", 5001) + " -\n", err: "exceeds maximum 5000"},
	{name: "lone dash content", in: root + `/f 1 100644 1 0 0 0 0.0 - \x2d -` + "\n", want: root + `/f 1 100644 1 0 0 0 0.0 - \x2d -` + "\n"},
	{name: "empty file drops payload", in: root + "/f 0 100644 1 0 0 0 0.0 ab/cd - -\n", want: root + "/f 0 100644 1 0 0 0 0.0 - - -\n"},
	{name: "external", in: root + "/f 10 100644 1 0 0 0 0.0 ab/cd - " + strings.Repeat("0f", 32) + "trailing\n", want: root + "/f 10 100644 1 0 0 0 0.0 ab/cd - " + strings.Repeat("0f", 32) + "\n"},
	{name: "short digest", in: root + "/f 10 100644 1 0 0 0 0.0 ab/cd - 0f0f\n", err: "Invalid digest"},
	{name: "bad digest on non-external", in: root + "/f 0 100644 1 0 0 0 0.0 - - xyz\n", want: root + "/f 0 100644 1 0 0 0 0.0 - - -\n"},
	{name: "ten fields", in: root + "/f 0 100644 1 0 0 0 0.0 - -\n", want: root + "/f 0 100644 1 0 0 0 0.0 - - -\n"},
	{name: "xattrs", in: root + `/f 0 100644 1 0 0 0 0.0 - - - user.b=1 user.a\x3dx=a=b user.b=2` + "\n", want: root + `/f 0 100644 1 0 0 0 0.0 - - - user.a\x3dx=a\x3db user.b=2` + "\n"},
	{name: "trailing space", in: root + "/f 0 100644 1 0 0 0 0.0 - - - \n", want: root + "/f 0 100644 1 0 0 0 0.0 - - -\n"},
	{name: "two trailing spaces", in: root + "/f 0 100644 1 0 0 0 0.0 - - -  \n", err: "Missing = in xattr"},
	{name: "empty xattr key", in: root + "/f 0 100644 1 0 0 0 0.0 - - - =v\n", err: "Can't set xattr"},
	{name: "long xattr key", in: root + "/f 0 100644 1 0 0 0 0.0 - - - user." + strings.Repeat("k", 251) + "=v\n", err: "Can't set xattr"},
	{name: "xattr budget", in: root + "/f 0 100644 1 0 0 0 0.0 - - - user.a=" + strings.Repeat("v", 32743) + "\n", err: "too many xattrs"},
	{name: "xattr section too long", in: root + "/f 0 100644 1 0 0 0 0.0 - - - " + strings.Repeat("u=", 32768) + "\n", err: "Too many xattrs"},
	{name: "xattr replace budget", in: root + "/f 0 100644 1 0 0 0 0.0 - - - user.b=1 user.a=" + strings.Repeat("v", 32720) + " user.a=x user.c=" + strings.Repeat("w", 32700) + "\n", want: root + "/f 0 100644 1 0 0 0 0.0 - - - user.b=1 user.a=x user.c=" + strings.Repeat("w", 32700) + "\n"},
	{name: "xattr budget edge", in: root + "/f 0 100644 1 0 0 0 0.0 - - - user.a=" + strings.Repeat("v", 32742) + "\n", want: root + "/f 0 100644 1 0 0 0 0.0 - - - user.a=" + strings.Repeat("v", 32742) + "\n"},
	{name: "hard link", in: root + "/a 3 100644 2 0 0 0 0.0 - abc -\n/b 0 @100644 0 0 0 0 0.0 /a - -\n", strict: true, want: root + "/a 3 100644 2 0 0 0 0.0 - abc -\n/b 3 @100644 2 0 0 0 0.0 /a abc -\n"},
	{name: "forward hard link chain", in: root + "/a 0 @100644 0 0 0 0 0.0 /b - -\n/b 0 @100644 0 0 0 0 0.0 /c - -\n/c 0 100644 1 0 0 0 0.0 - - -\n", want: root + "/a 0 100644 1 0 0 0 0.0 - - -\n/b 0 @100644 1 0 0 0 0.0 /a - -\n/c 0 @100644 1 0 0 0 0.0 /a - -\n"},
	{name: "hard link cycle", in: root + "/a 0 @100644 0 0 0 0 0.0 /b - -\n/b 0 @100644 0 0 0 0 0.0 /a - -\n", err: "cycle"},
	{name: "hard link missing", in: root + "/a 0 @100644 0 0 0 0 0.0 /nope - -\n", err: "No target"},
	{name: "hard link no target", in: root + "/a 0 @100644 0 0 0 0 0.0 - - -\n", err: "No target path"},
	{name: "hard link self", in: root + "/a 0 @100644 0 0 0 0 0.0 /a - -\n", err: "Self-referential"},
	{name: "hard link dir mode", in: root + "/a 0 @40755 0 0 0 0 0.0 / - -\n", err: "Directories can't be hardlinked"},
	{name: "hard link ignores fields", in: root + "/f 0 100644 1 0 0 0 0.0 - - -\n/a x @100644 y z w v u /f q r s=t\n", want: root + "/a 0 100644 1 0 0 0 0.0 - - -\n/f 0 @100644 1 0 0 0 0.0 /a - -\n"},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Parse(strings.NewReader(tc.in), Options{Strict: tc.strict})
			if tc.err != "" {
				if err == nil {
					t.Fatalf("accepted, want error %q", tc.err)
				}
				if !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %q, want %q wrapping ErrInvalid", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := Write(&out, tr); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("dump:\n%s\nwant:\n%s", out.String(), tc.want)
			}
		})
	}
}

func TestShouldFailCorpus(t *testing.T) {
	var files []namedFile
	for _, c := range testutil.CorpusCases(t) {
		if c.ShouldFail() {
			files = append(files, namedFile{c.Base(), testutil.ReadCorpusFile(t, c.Path)})
		}
	}
	if len(files) == 0 {
		t.Fatal("no should-fail files")
	}
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			if f.name == "should-fail-too-big.dump" {
				// The reference parses it; its image writer refuses the
				// file as too large (layers/erofs tests that).
				if _, err := Parse(bytes.NewReader(f.data), Options{Strict: true}); err != nil {
					t.Errorf("the reference's parser accepts this file; Parse: %v", err)
				}
				return
			}
			for _, strict := range []bool{false, true} {
				if _, err := Parse(bytes.NewReader(f.data), Options{Strict: strict}); err == nil {
					t.Errorf("strict=%v: accepted", strict)
				}
			}
		})
	}
}
