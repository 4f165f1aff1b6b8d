package erofs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/layers/tree"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// corpusDir returns the conformance corpus directory, /work/shared/… seen
// from the repository root's parent. A missing corpus fails the test in CI
// and skips it elsewhere.
func corpusDir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	repoRoot := filepath.Join(wd, "..", "..")
	dir := filepath.Join(repoRoot, "..", "shared", "conformance", "composefs")
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("conformance corpus missing at %s: %v", dir, err)
		}
		t.Skipf("conformance corpus missing at %s: %v", dir, err)
	}
	return dir
}

// corpusCase is one dumpfile of the corpus.
type corpusCase struct {
	name    string
	path    string
	sha256  string // expected image digest, "" for should-fail cases
	version int    // -1: default versions
	strict  bool
}

func corpusCases(t testing.TB) []corpusCase {
	dir := corpusDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.dump*"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []corpusCase
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasSuffix(base, ".sha256") || strings.HasSuffix(base, ".version") {
			continue
		}
		c := corpusCase{name: base, path: f, version: -1}
		if b, err := os.ReadFile(f + ".sha256"); err == nil {
			c.sha256 = strings.TrimSpace(string(b))
		} else if !strings.HasPrefix(base, "should-fail-") {
			t.Fatalf("%s: no .sha256 and not a should-fail case", base)
		}
		if b, err := os.ReadFile(f + ".version"); err == nil {
			v, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s.version: %v", base, err)
			}
			c.version = v
		}
		switch base {
		case "no-newline.dump", "longlink.dump", "honggfuzz-longlink-unterminated.dump":
		default:
			c.strict = true
		}
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		t.Fatalf("no dumpfiles in %s", dir)
	}
	return cases
}

func (c corpusCase) options() Options {
	if c.version < 0 {
		return DefaultOptions()
	}
	return Options{MinVersion: uint32(c.version), MaxVersion: uint32(c.version)}
}

// buildImage parses a dumpfile and writes its image.
func buildImage(dump []byte, strict bool, opts Options) ([]byte, *tree.Tree, error) {
	tr, err := dumpfile.Parse(bytes.NewReader(dump), dumpfile.Options{Strict: strict})
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	if err := Write(&buf, tr, opts); err != nil {
		return nil, tr, err
	}
	return buf.Bytes(), tr, nil
}

func TestConformance(t *testing.T) {
	for _, c := range corpusCases(t) {
		t.Run(c.name, func(t *testing.T) {
			dump := testutil.ReadCorpusFile(t, c.path)
			if c.sha256 == "" {
				for _, strict := range []bool{false, true} {
					_, _, err := buildImage(dump, strict, c.options())
					if err == nil {
						t.Fatalf("strict=%v: accepted, want an error", strict)
					}
					if !errors.Is(err, dumpfile.ErrInvalid) && !errors.Is(err, ErrFileTooLarge) {
						t.Errorf("strict=%v: unexpected error class: %v", strict, err)
					}
					t.Logf("strict=%v: rejected: %v", strict, err)
				}
				return
			}
			img, _, err := buildImage(dump, c.strict, c.options())
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			sum := sha256.Sum256(img)
			if got := hex.EncodeToString(sum[:]); got != c.sha256 {
				t.Errorf("image sha256 = %s, want %s (size %d)", got, c.sha256, len(img))
			}
		})
	}
}
