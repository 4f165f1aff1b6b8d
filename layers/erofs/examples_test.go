package erofs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// fsverityDigest is a test-only fs-verity sha256 digest (4096-byte blocks,
// no salt), used to check the "verity" column of the spec's examples.
func fsverityDigest(data []byte) [32]byte {
	var root [32]byte
	if len(data) > 0 {
		level := data
		for {
			var next []byte
			for off := 0; off < len(level); off += blkSize {
				var blk [blkSize]byte
				copy(blk[:], level[off:min(off+blkSize, len(level))])
				h := sha256.Sum256(blk[:])
				next = append(next, h[:]...)
			}
			if len(next) == 32 {
				copy(root[:], next)
				break
			}
			level = next
		}
	}
	var desc [256]byte
	desc[0], desc[1], desc[2] = 1, 1, 12
	binary.LittleEndian.PutUint64(desc[8:], uint64(len(data)))
	copy(desc[16:], root[:])
	return sha256.Sum256(desc[:])
}

func TestFsverityHelper(t *testing.T) {
	tests := map[string]string{
		"":                          "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95",
		"hello world":               "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
		strings.Repeat("x", 528384): "c4457f43f307992a4dda813cf05aa2cd0b09ecf642a74b261a68cf8a9e2f4609",
	}
	for in, want := range tests {
		d := fsverityDigest([]byte(in))
		if got := hex.EncodeToString(d[:]); got != want {
			t.Errorf("digest(%d bytes) = %s, want %s", len(in), got, want)
		}
	}
}

const rootLine = "/ 0 40755 2 0 0 0 0.0 - - -\n"

// example is one worked micro-example of the format spec (§14).
type example struct {
	name   string
	dump   string
	opts   Options
	size   int
	sha256 string
	verity string
}

func lines(format string, n int, f func(i int) []any) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, format, f(i)...)
	}
	return b.String()
}

func specExamples() []example {
	def := DefaultOptions()
	e12 := lines("/f%d %d 100644 1 0 0 0 0.0 - %s -\n", 5, func(i int) []any {
		n := []int{2048, 3000, 4096, 4097, 5000}[i]
		c := make([]byte, n)
		for j := range c {
			c[j] = 'a' + byte(j%26)
		}
		return []any{n, n, c}
	})
	return []example{
		{"E01", rootLine, def, 16384, "c3dc5b0fc4afb0693a95e017fe5815e1f88f204d485df617541b5ea659aefb8b", "8f589e8f57ecb88823736b0d857ddca1e1068a23e264fad164b28f7038eb3682"},
		{"E01-v1", rootLine, Options{MinVersion: 1}, 16384, "18e13c704e2aae7f84be9fda89fdc4c5001c184d279b90a93434e872e5e7c190", "14a26c957c84f6eb774b91205476adc13196c7c33b9dd97d08d43725ecb90b63"},
		{"E02", rootLine + `/hello 12 100644 1 0 0 0 0.0 - hello\x20world\n -` + "\n", def, 16384, "555bf68ce5a1b21fa52e3ff1694ef671a16f0b84aa513a53c468651346b733ca", "d2fa352cc30e28645ccb0ba66e4ed04c0a6e7c42750646de5d7ff1541f4ca976"},
		{"E02-v1", rootLine + `/hello 12 100644 1 0 0 0 0.0 - hello\x20world\n -` + "\n", Options{MinVersion: 1}, 16384, "85ad6cbb0b67d793bd2c9eccab31b5d4fe0cbdddb17df8460b5b842b542d01f2", ""},
		{"E03", rootLine + "/ext 1234 100644 1 0 0 0 0.0 5a/" + strings.Repeat("5a", 31) + " - " + strings.Repeat("5a", 32) + "\n", def, 16384, "e773ef25f7f463dbf593a6b5b34eb3b2a7c01a41169063cef3b1dbe109283d58", "7ae821f628d57d7c3ede937d25f5d136f7756ba1572b857b6aa9f536fdd605c4"},
		{"E04", rootLine + "/nodigest 1 100644 1 0 0 0 0.0 - - -\n", def, 16384, "9c1703aea5a64562a927ec9d520a2514224cce260437638bcf1299c53d08efac", "128da27d80f94a03d7c66013fe360788b81b930b758417b109348b873e979c6b"},
		{"E05", rootLine + "/d 0 40755 2 0 0 0 0.0 - - -\n/d/wh 0 20000 1 0 0 0 0.0 - - -\n", def, 16384, "4576b865fa345fee6c870c0727cc40c10f369af5e3072f1242bbd957eaefe420", "eac8d2330027be4454a602fb0f5c216e0451a0f5e35891d6d03b0401f736b57a"},
		{"E05-max0", rootLine + "/d 0 40755 2 0 0 0 0.0 - - -\n/d/wh 0 20000 1 0 0 0 0.0 - - -\n", Options{}, 16384, "3c3f8fefc1f4fc2eda7ca5b4f21c59c7bcec64c0423ab3ed116ee92673fe7fbc", "e0c435baeba7a3fe671349fa488698bc4a7ce970441ff678d704208bdeadbce6"},
		{"E06", rootLine + "/blk 0 60660 1 0 6 2049 0.0 - - -\n/chr 0 20666 1 0 0 259 0.0 - - -\n/fifo 0 10644 1 0 0 0 0.0 - - -\n/sock 0 140777 1 0 0 0 0.0 - - -\n", def, 16384, "bf1e58ea03e3ce7d7da7def87f0d6a1deee1508e9ae9a8ad502503b72b6c2db3", "0fff597d44c62df9a527f1d164239eccfbaa141f04816addb67ec5c7745e5b72"},
		{"E07", rootLine + "/short 7 120777 1 0 0 0 0.0 /target - -\n/long 4095 120777 1 0 0 0 0.0 " + strings.Repeat("x", 4095) + " - -\n", def, 24576, "984339d4d1812f393bdba470c37057c28afcfb307b5708f9b792fa4d2d2ff0d8", "947c252bac20a5cebc67a39b501555542c0d278be1dea09ed4c543f5265e6b2e"},
		{"E08", rootLine + "/a 3 100644 2 0 0 0 0.0 - abc -\n/b 0 @100644 0 0 0 0 0.0 /a - -\n", def, 16384, "0f18fb0bd09385c53c1538c033ad6b664bbb2c93b2673ee31b6a88c0de2bc064", "d85b9a943b5487414a2aa20877159b691f55fb32db1bf81bb615a21f38a2d89f"},
		{"E09", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - user.common=1 user.only-a=2\n/b 0 100644 1 0 0 0 0.0 - - - user.common=1\n", def, 16384, "2673c207482b1313d1c3c2546bdec4fd65c174d7c527ee1fa418e89ca0049653", "c8a6c51ec0dc7689395a03649d97ba3ccf169dedc927c6bdb37350989aecd7c7"},
		{"E10", "/ 0 40755 2 0 0 0 100.0 - - -\n/newer 0 100644 1 0 0 0 200.5 - - -\n/biguid 0 100644 1 70000 0 0 100.0 - - -\n", def, 16384, "ed5f00627233ac8ea2581a60e37f76938422bedab3e2ad0769d918536bf5c176", "e2b7317642c64082988a493d7b46fd0a75e040ab509a5c91c7005b2fa81baa79"},
		{"E11", rootLine + lines("/f%019d 0 100644 1 0 0 0 0.0 - - -\n", 300, func(i int) []any { return []any{i} }), def, 32768, "7fe58bf309bf92d171c344d9dfecefe3191534c849fa5905ca63eb6bc51df6c2", "41e2ed14c3d855c883a3d18d2e9aba50a411fd08489c5f516fc86536af30ef49"},
		{"E12", rootLine + e12, def, 36864, "ed794715531c5bda3cebe20dba4b104ff8db11aa52cc5999bc017cfa102c6a1b", "b2a84d677787d109f88fb21df2bb9f46fd770eaaf33fb0600cddfeb7ebfd14dd"},
		{"E13", "/ 0 40755 2 0 0 0 0.0 - - - security.selinux=system_u:object_r:root_t:s0\n", def, 24576, "c287f8e9ad086acb276de2f88f27f3b99cc757516f571486ee8dc61bb2f463da", "42ed92a0603a3cef926797a846d9ff1159a788d3b5642ce039372a4e0d89111c"},
		{"E14", rootLine + "/bigfile 9000000000000000 100777 1 0 0 0 0.0 - - -\n", def, 20480, "475838479da68b086445eca1f12dd30fc4513f3f88c66b40b58fd70f7495ea27", "160c71227628d810604ad305e5d4a912e01a5964866b9bec9f8fddc55e352bfb"},
		{"E15", rootLine + `/acl 0 100644 1 0 0 0 0.0 - - - system.posix_acl_access=\x02\x00\x00\x00 trusted.overlay.opaque=y` + "\n", def, 16384, "be71a41971e77d8f8ad6c064d034cb814015a0883c1fdb7fef1620ca6b7aed78", "a310aad72d4c281c05e0090f7dcb38d4512c514d017613bd5b36348232bdedbb"},
		{"E16", rootLine + "/d 0 40755 2 0 0 0 0.0 - - -\n" + lines("/d/f%03d 0 100644 1 0 0 0 0.0 - - -\n", 100, func(i int) []any { return []any{i} }), def, 20480, "43825da4784ae1d301d314a69cce9168660e7b5da4e14038fc2943483836bfd2", "f3d543f62ee43a9d1b8ce99f9e4318aaee4758e9d111466977b6a2b5165292ec"},
	}
}

// TestSpecExamples checks the worked examples of the format spec (§14):
// size, sha256 and fs-verity digest of each image.
func TestSpecExamples(t *testing.T) {
	for _, ex := range specExamples() {
		t.Run(ex.name, func(t *testing.T) {
			img, _, err := buildImage([]byte(ex.dump), true, ex.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(img) != ex.size {
				t.Errorf("size = %d, want %d", len(img), ex.size)
			}
			sum := sha256.Sum256(img)
			if got := hex.EncodeToString(sum[:]); got != ex.sha256 {
				t.Errorf("sha256 = %s, want %s", got, ex.sha256)
			}
			if ex.verity != "" {
				d := fsverityDigest(img)
				if got := hex.EncodeToString(d[:]); got != ex.verity {
					t.Errorf("verity = %s, want %s", got, ex.verity)
				}
			}
		})
	}
}

// TestWriteDeterministic writes the same tree twice and checks the bytes
// match and the tree is left unchanged.
func TestWriteDeterministic(t *testing.T) {
	for _, ex := range specExamples() {
		img1, tr, err := buildImage([]byte(ex.dump), true, ex.opts)
		if err != nil {
			t.Fatal(err)
		}
		var img2 bytes.Buffer
		if err := Write(&img2, tr, ex.opts); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(img1, img2.Bytes()) {
			t.Errorf("%s: second write differs (tree modified by Write?)", ex.name)
		}
	}
}

// TestWriteLeavesTreeAlone checks that Write does not modify its input
// (escaping, sorting and overlay xattrs live in the writer's own state).
func TestWriteLeavesTreeAlone(t *testing.T) {
	mt, _ := mountTree(t)
	for name, tr := range map[string]*tree.Tree{"sample": sampleTree(t), "mount": mt} {
		var before, after bytes.Buffer
		if err := dumpfile.Write(&before, tr); err != nil {
			t.Fatal(err)
		}
		_ = writeImage(t, tr, DefaultOptions())
		if err := dumpfile.Write(&after, tr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before.Bytes(), after.Bytes()) {
			t.Errorf("%s: tree changed by Write:\n%s\n---\n%s", name, before.Bytes(), after.Bytes())
		}
	}
}
