package dedup

import (
	"bytes"
	"slices"
	"testing"
)

// The on-disk decoders must reject damage with an error, never panic,
// and round-trip what the encoders write.

func FuzzDecodeRefs(f *testing.F) {
	f.Add(encodeRefs(nil))
	f.Add(encodeRefs([]Digest{{1}, {2}}))
	f.Add([]byte("CFSREFS1\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := decodeRefs(b)
		if err != nil {
			return
		}
		if !slices.Equal(encodeRefs(ds), b) {
			t.Fatalf("accepted refs do not re-encode to the same bytes")
		}
	})
}

func FuzzReadPending(f *testing.F) {
	f.Add([]byte(pendingMagic + "p" + string(make([]byte, 32))))
	f.Add([]byte(pendingMagic + "x"))
	f.Add([]byte("CFS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := readPending(b)
		if err == nil && len(b) >= len(pendingMagic) && len(recs) != (len(b)-len(pendingMagic))/pendingRecord {
			t.Fatalf("%d records from %d bytes", len(recs), len(b))
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	r := indexRecordBytes(SHA256{1}, Digest{2})
	f.Add(r[:])
	f.Add(append([]byte{0, 1, 2}, r[:]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseIndex(b, func(sha SHA256, d Digest) {
			rec := indexRecordBytes(sha, d)
			if !bytes.Contains(b, rec[:]) {
				t.Fatalf("parsed a record (%s -> %s) that is not in the input", sha, d)
			}
		})
	})
}
