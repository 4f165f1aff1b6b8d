package layers

import (
	"archive/tar"
	"testing"
)

// TestComposeStacksAsTwoLayers: for every case, base + Compose(l, u)
// shows what base + l + u shows, whatever base holds below.
func TestComposeStacksAsTwoLayers(t *testing.T) {
	bases := [][]entry{
		{},
		{dir("d/"), reg("d/below", "b"), dir("x/"), reg("x/below", "b"), reg("f", "base f"), dir("w/"), reg("w/below", "b")},
	}
	cases := map[string][2][]entry{
		"add and replace files": {
			{reg("f", "from l"), reg("g", "l's g")},
			{reg("g", "u's g"), reg("h", "u's h")},
		},
		"u whites out l's file and a base file": {
			{reg("g", "l's g")},
			{reg(".wh.g", ""), reg(".wh.f", ""), reg("d/.wh.below", "")},
		},
		"u makes a dir where l whited one out": {
			{reg(".wh.x", "")},
			{dir("x/"), reg("x/new", "n")},
		},
		"u makes a dir where l put a file": {
			{reg("w", "a file over the base dir")},
			{dir("w/"), reg("w/new", "n")},
		},
		"u opaque dir over l's dir": {
			{dir("d/"), reg("d/froml", "l")},
			{dir("d/"), reg("d/.wh..wh..opq", ""), reg("d/fromu", "u")},
		},
		"dir metadata and nested merge": {
			{dir("d/"), reg("d/a", "a"), dir("d/s/"), reg("d/s/x", "x")},
			{entry{hdr: withMode(dir("d/").hdr, 0o700)}, reg("d/s/y", "y"), reg("d/.wh.a", "")},
		},
		"l opaque dir, u adds to it": {
			{dir("x/"), reg("x/.wh..wh..opq", ""), reg("x/l", "l")},
			{reg("x/u", "u")},
		},
	}
	for name, c := range cases {
		for bi, base := range bases {
			m := newMemContents()
			want := ingest(t, m, base...)
			for _, layer := range [][]entry{c[0], c[1]} {
				if err := Merge(want, ingest(t, m, layer...)); err != nil {
					t.Fatal(err)
				}
			}
			FixLinks(want)
			composed := ingest(t, m, c[0]...)
			if err := Compose(composed, ingest(t, m, c[1]...)); err != nil {
				t.Fatalf("%s: Compose: %v", name, err)
			}
			FixLinks(composed)
			got := ingest(t, m, base...)
			if err := Merge(got, composed); err != nil {
				t.Fatal(err)
			}
			FixLinks(got)
			if a, b := listing(t, want, m), listing(t, got, m); a != b {
				t.Errorf("%s (base %d): base+Compose(l,u) differs from base+l+u:\n--- base+l+u\n%s\n--- base+Compose\n%s", name, bi, a, b)
			}
		}
	}
}

func withMode(h tar.Header, mode int64) tar.Header {
	h.Mode = mode
	return h
}
