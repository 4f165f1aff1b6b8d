package erofs

import "testing"

func TestXXH32(t *testing.T) {
	tests := []struct {
		in   string
		seed uint32
		want uint32
	}{
		{"", 0, 0x02CC5D05},
		{"overlay.opaque", 0x25BBE093, 0x4CE0A7F4},
		{"selinux", 0x25BBE095, 0x9490146B},
		{"overlay.metacopy", 0x25BBE093, 0xDBE5E05F},
		{"overlay.redirect", 0x25BBE093, 0x887EC271},
	}
	for _, tc := range tests {
		if got := xxh32([]byte(tc.in), tc.seed); got != tc.want {
			t.Errorf("xxh32(%q, %#x) = %#x, want %#x", tc.in, tc.seed, got, tc.want)
		}
	}
}
