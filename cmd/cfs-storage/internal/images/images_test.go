package images

import (
	"slices"
	"testing"
)

func TestStoreName(t *testing.T) {
	for src, want := range map[string]string{
		"oci:/tmp/My Layout:v1":     "localhost/my-layout:v1",
		"oci:/tmp/layout":           "localhost/layout:latest",
		"oci-archive:/tmp/img.tar":  "localhost/img:latest",
		"docker://quay.io/a/b:1":    "quay.io/a/b:1",
		"docker://alpine":           "docker.io/library/alpine:latest",
		"docker-archive:/tmp/x.tar": "localhost/x:latest",
	} {
		ref, err := parseTransportRef(src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		got, err := storeName(ref)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", src, got, err, want)
		}
	}
	if _, err := parseTransportRef("alpine"); err == nil {
		t.Error("a reference without transport parsed")
	}
}

func TestCandidates(t *testing.T) {
	got := candidates("layout:v1")
	if !slices.Contains(got, "localhost/layout:v1") {
		t.Errorf("candidates(layout:v1) = %v", got)
	}
	got = candidates("alpine")
	for _, want := range []string{"alpine:latest", "localhost/alpine:latest", "docker.io/library/alpine:latest"} {
		if !slices.Contains(got, want) {
			t.Errorf("candidates(alpine) = %v, missing %s", got, want)
		}
	}
}
