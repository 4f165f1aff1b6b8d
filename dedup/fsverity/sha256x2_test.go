package fsverity

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestSum2 compares the two-lane block hash with crypto/sha256 on random
// blocks, including a pair of equal blocks.
func TestSum2(t *testing.T) {
	if !useX2 {
		t.Skip("no two-lane SHA-256 on this CPU or architecture; the one-lane path is covered by the other tests")
	}
	r := rand.New(rand.NewPCG(1, 2))
	a, b := make([]byte, BlockSize), make([]byte, BlockSize)
	for i := range 200 {
		for j := range a {
			a[j], b[j] = byte(r.Uint32()), byte(r.Uint32())
		}
		if i == 0 {
			copy(b, a)
		}
		da, db := sum2(a, b)
		if da != sha256.Sum256(a) || db != sha256.Sum256(b) {
			t.Fatalf("pair %d: two-lane hash differs from crypto/sha256", i)
		}
	}
}
