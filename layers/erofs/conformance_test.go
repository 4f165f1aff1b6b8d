package erofs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/layers/tree"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// corpusCase is one dumpfile of the conformance corpus: the repository's
// copy (testdata/conformance/composefs), plus newer cases of ../shared.
type corpusCase struct {
	name    string
	path    string
	sha256  string // expected image digest, "" for should-fail cases
	version int    // -1: default versions
	strict  bool
}

func corpusCases(t testing.TB) []corpusCase {
	var cases []corpusCase
	for _, c := range testutil.CorpusCases(t) {
		cases = append(cases, corpusCase{name: c.Name, path: c.Path,
			sha256: c.SHA256, version: c.Version, strict: c.Strict})
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
