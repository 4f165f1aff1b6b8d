//go:build amd64 && !purego

package fsverity

import "encoding/binary"

//go:generate go run gen_sha256x2.go

// blocksX2 compresses n 64-byte blocks from a into h[0:8] and from b
// into h[8:16] (sha256x2_amd64.s, generated from the standard library's
// SHA-NI code).
//
//go:noescape
func blocksX2(h *[16]uint32, a, b *byte, n int)

//go:noescape
func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// useX2 reports whether the CPU has the SHA extensions (CPUID leaf 7
// EBX bit 29) and SSSE3 and SSE4.1 (leaf 1 ECX bits 9 and 19), which the
// two-lane block function needs. It is computed once at start-up and
// never changes: a fact about the machine, like runtime.GOARCH.
var useX2 = detectX2()

func detectX2() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, c1, _ := cpuid(1, 0)
	_, b7, _, _ := cpuid(7, 0)
	return c1&(1<<9) != 0 && c1&(1<<19) != 0 && b7&(1<<29) != 0
}

// sum2 returns the SHA-256 of two BlockSize-byte blocks, hashed together
// in two interleaved lanes.
func sum2(a, b []byte) (da, db [Size]byte) {
	_, _ = a[BlockSize-1], b[BlockSize-1]
	iv := [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}
	var st [16]uint32
	copy(st[:8], iv[:])
	copy(st[8:], iv[:])
	blocksX2(&st, &a[0], &b[0], BlockSize/64)
	// Every data block is BlockSize bytes long, so its SHA-256 padding
	// is one constant block: 0x80, zeros, then the length in bits
	// (32768) as a big-endian uint64.
	var pad [64]byte
	pad[0] = 0x80
	binary.BigEndian.PutUint64(pad[56:], BlockSize*8)
	blocksX2(&st, &pad[0], &pad[0], 1)
	for i := range 8 {
		binary.BigEndian.PutUint32(da[4*i:], st[i])
		binary.BigEndian.PutUint32(db[4*i:], st[8+i])
	}
	return da, db
}
