package fsverity

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

const (
	// BlockSize is the Merkle tree block size, in bytes (log_blocksize 12).
	BlockSize = 4096
	// Size is the size of a digest, in bytes (SHA-256).
	Size = sha256.Size
	// hashesPerBlock is how many child hashes one tree block holds.
	hashesPerBlock = BlockSize / Size
	// descriptorSize is the size of struct fsverity_descriptor.
	descriptorSize = 256
	// maxLevels bounds the tree depth: 2^64 bytes need 9 levels of
	// 128-way fan-out above the 4 KiB data blocks.
	maxLevels = 10
)

// Descriptor field offsets and values (struct fsverity_descriptor in
// include/uapi/linux/fsverity.h).
const (
	descVersionOff  = 0  // __u8 version, always 1
	descHashAlgOff  = 1  // __u8 hash_algorithm, FS_VERITY_HASH_ALG_SHA256 = 1
	descLogBlockOff = 2  // __u8 log_blocksize, 12 for 4096-byte blocks
	descSaltSizeOff = 3  // __u8 salt_size, 0 (no salt)
	descDataSizeOff = 8  // __le64 data_size
	descRootHashOff = 16 // __u8 root_hash[64], SHA-256 uses the first 32
	descVersion     = 1
	descHashSHA256  = 1
	descLogBlock    = 12
)

// level holds the not yet hashed tail of one Merkle tree level: up to 128
// child hashes, packed as the kernel packs them in a tree block.
type level struct {
	buf   [BlockSize]byte
	n     int    // bytes used in buf (a multiple of Size)
	count uint64 // hashes ever appended to this level
}

// Hasher is a streaming fs-verity SHA-256 digest. It implements
// hash.Hash: Write the file's data, and Sum appends the 32-byte fs-verity
// file digest. The zero value is ready for use.
//
// Full data blocks are hashed straight from the caller's slice; only a
// partial block is copied. A level's block is allocated once, the first
// time the tree reaches that level, and reused after Reset.
type Hasher struct {
	block  [BlockSize]byte // partial data block
	nblock int             // bytes used in block
	size   uint64          // data bytes written
	levels [maxLevels]*level
	depth  int // levels in use; levels[0] holds data block hashes
}

var _ hash.Hash = (*Hasher)(nil)

// New returns a Hasher ready for writing.
func New() *Hasher {
	return new(Hasher)
}

// Size returns the digest size, 32 bytes.
func (h *Hasher) Size() int { return Size }

// BlockSize returns the Merkle tree block size, 4096 bytes; writes that
// are multiples of it avoid copying.
func (h *Hasher) BlockSize() int { return BlockSize }

// Reset returns h to its initial state, keeping its buffers.
func (h *Hasher) Reset() {
	h.nblock = 0
	h.size = 0
	for _, l := range h.levels[:h.depth] {
		l.n, l.count = 0, 0
	}
	h.depth = 0
}

// Write adds p to the data. It never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	n := len(p)
	h.size += uint64(n)
	if h.nblock > 0 {
		c := copy(h.block[h.nblock:], p)
		h.nblock += c
		p = p[c:]
		if h.nblock < BlockSize {
			return n, nil
		}
		h.addHash(0, sha256.Sum256(h.block[:]))
		h.nblock = 0
	}
	for useX2 && len(p) >= 2*BlockSize {
		a, b := sum2(p[:BlockSize], p[BlockSize:2*BlockSize])
		h.addHash(0, a)
		h.addHash(0, b)
		p = p[2*BlockSize:]
	}
	for len(p) >= BlockSize {
		h.addHash(0, sha256.Sum256(p[:BlockSize]))
		p = p[BlockSize:]
	}
	if len(p) > 0 {
		h.nblock = copy(h.block[:], p)
	}
	return n, nil
}

// addHash appends sum to level i. A full level block is hashed only when
// a further hash needs room, so that a level ending with exactly one full
// block is still whole at Sum time (it is then the root block).
func (h *Hasher) addHash(i int, sum [Size]byte) {
	if i >= h.depth {
		if h.levels[i] == nil {
			h.levels[i] = new(level)
		}
		h.depth = i + 1
	}
	l := h.levels[i]
	if l.n == BlockSize {
		h.addHash(i+1, sha256.Sum256(l.buf[:]))
		l.n = 0
	}
	copy(l.buf[l.n:], sum[:])
	l.n += Size
	l.count++
}

// Sum appends the fs-verity digest of the data written so far to b. It
// does not change h's state.
func (h *Hasher) Sum(b []byte) []byte {
	d := h.Sum32()
	return append(b, d[:]...)
}

// Sum32 returns the fs-verity digest of the data written so far, without
// changing h's state.
func (h *Hasher) Sum32() [Size]byte {
	root := h.rootHash()
	var desc [descriptorSize]byte
	desc[descVersionOff] = descVersion
	desc[descHashAlgOff] = descHashSHA256
	desc[descLogBlockOff] = descLogBlock
	desc[descSaltSizeOff] = 0
	binary.LittleEndian.PutUint64(desc[descDataSizeOff:], h.size)
	copy(desc[descRootHashOff:], root[:])
	return sha256.Sum256(desc[:])
}

// rootHash finishes the tree without changing h and returns the Merkle
// root hash (all zero for empty data).
//
// Going up the levels it carries at most two hashes that h has not
// stored: the partial data block's hash into level 0, then the hashes of
// each level's unhashed tail (at most 128 stored hashes plus two carried
// ones, so at most two blocks) into the next.
func (h *Hasher) rootHash() [Size]byte {
	var root [Size]byte
	if h.size == 0 {
		return root
	}
	var carry [2][Size]byte
	ncarry := 0
	if h.nblock > 0 {
		var b [BlockSize]byte
		copy(b[:], h.block[:h.nblock])
		carry[0] = sha256.Sum256(b[:])
		ncarry = 1
	}
	var tail [BlockSize + 2*Size]byte
	for i := 0; ; i++ {
		var stored []byte
		var count uint64
		if i < h.depth {
			stored, count = h.levels[i].buf[:h.levels[i].n], h.levels[i].count
		}
		count += uint64(ncarry)
		n := copy(tail[:], stored)
		for _, c := range carry[:ncarry] {
			n += copy(tail[n:], c[:])
		}
		if i == 0 && count == 1 {
			copy(root[:], tail[:Size])
			return root
		}
		clear(tail[n:])
		if count <= hashesPerBlock {
			return sha256.Sum256(tail[:BlockSize])
		}
		ncarry = 0
		for off := 0; off < n; off += BlockSize {
			var b [BlockSize]byte
			copy(b[:], tail[off:n])
			carry[ncarry] = sha256.Sum256(b[:])
			ncarry++
		}
	}
}

// Digest reads r to EOF and returns its fs-verity digest and its length.
func Digest(r io.Reader) ([Size]byte, int64, error) {
	h := New()
	n, err := io.CopyBuffer(h, r, make([]byte, 16*BlockSize))
	if err != nil {
		return [Size]byte{}, n, fmt.Errorf("fsverity: digest: %w", err)
	}
	return h.Sum32(), n, nil
}

// DigestBytes returns the fs-verity digest of b.
func DigestBytes(b []byte) [Size]byte {
	h := New()
	h.Write(b)
	return h.Sum32()
}

// ErrInvalidHex is returned by ParseHex for a string that is not 64
// hexadecimal digits.
var ErrInvalidHex = errors.New("fsverity: invalid hex digest")
