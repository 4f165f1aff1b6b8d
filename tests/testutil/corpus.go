package testutil

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// CorpusCase is one dumpfile of the composefs conformance corpus.
type CorpusCase struct {
	// Name is the file's path below the corpus root, with "/" separators
	// ("config.dump.gz", "regress/random-1.dump.gz").
	Name string
	// Path is where the file is read from: the repository's copy, or
	// ../shared for a case the copy lacks.
	Path string
	// SHA256 is the sha256 of the image the reference writes; "" for a
	// should-fail case.
	SHA256 string
	// Version is the minimum and maximum format version to build with,
	// -1 for the defaults.
	Version int
	// Strict is whether the reference parses the file strictly
	// (CFS_PARSE_STRICT=1).
	Strict bool
}

// ShouldFail reports whether the reference rejects the file.
func (c CorpusCase) ShouldFail() bool { return c.SHA256 == "" }

// Base is the file's name without its directory.
func (c CorpusCase) Base() string { return filepath.Base(c.Name) }

// LenientCorpusFiles are the corpus files the reference's own tests parse
// leniently (without CFS_PARSE_STRICT); every other file is parsed
// strictly.
var LenientCorpusFiles = map[string]bool{
	"no-newline.dump":                      true,
	"longlink.dump":                        true,
	"honggfuzz-longlink-unterminated.dump": true,
}

// RepoRoot is the repository's top directory, found from this file's own
// location (tests/testutil).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testutil: cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CorpusDirs returns the corpus directories, in the order they are read:
// the repository's copy (testdata/conformance/composefs, which must exist)
// and, when it exists, ../shared/conformance/composefs beside the
// repository, which may hold newer cases.
func CorpusDirs(t testing.TB) []string {
	t.Helper()
	root := RepoRoot(t)
	repo := filepath.Join(root, "testdata", "conformance", "composefs")
	if _, err := os.Stat(filepath.Join(repo, "README.md")); err != nil {
		t.Fatalf("the repository's conformance corpus is missing: %v", err)
	}
	dirs := []string{repo}
	shared := filepath.Join(root, "..", "shared", "conformance", "composefs")
	if _, err := os.Stat(filepath.Join(shared, "README.md")); err == nil {
		dirs = append(dirs, shared)
	}
	return dirs
}

// CorpusCases lists the corpus' dumpfiles, the repository's copy first; a
// file of ../shared is added only when the copy has no file of the same
// name (".gz" aside). Sorted by name.
func CorpusCases(t testing.TB) []CorpusCase {
	t.Helper()
	seen := map[string]bool{}
	var cases []CorpusCase
	for _, dir := range CorpusDirs(t) {
		for _, sub := range []string{".", "regress"} {
			files, err := filepath.Glob(filepath.Join(dir, sub, "*.dump*"))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if strings.HasSuffix(f, ".sha256") || strings.HasSuffix(f, ".version") {
					continue
				}
				name := filepath.ToSlash(filepath.Join(sub, filepath.Base(f)))
				key := strings.TrimSuffix(name, ".gz")
				if seen[key] {
					continue
				}
				seen[key] = true
				cases = append(cases, corpusCase(t, name, f))
			}
		}
	}
	if len(cases) == 0 {
		t.Fatal("no dumpfiles in the conformance corpus")
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Name < cases[j].Name })
	return cases
}

func corpusCase(t testing.TB, name, path string) CorpusCase {
	t.Helper()
	base := filepath.Base(name)
	c := CorpusCase{Name: name, Path: path, Version: -1,
		Strict: !LenientCorpusFiles[strings.TrimSuffix(base, ".gz")]}
	if b, err := os.ReadFile(path + ".sha256"); err == nil {
		fields := strings.Fields(string(b))
		if len(fields) == 0 || len(fields[0]) != 64 {
			t.Fatalf("%s.sha256: not a sha256", path)
		}
		c.SHA256 = fields[0]
	} else if !strings.HasPrefix(base, "should-fail-") {
		t.Fatalf("%s: no .sha256 and not a should-fail case", path)
	}
	if b, err := os.ReadFile(path + ".version"); err == nil {
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s.version: %v", path, err)
		}
		c.Version = v
	}
	return c
}

// ReadCorpusFile reads a file of the conformance corpus, gunzipping it
// when its name ends in ".gz".
func ReadCorpusFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, ".gz") {
		return data
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if data, err = io.ReadAll(zr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return data
}
