package registry

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestProxyCounts puts the counting proxy in front of a fake registry
// and checks that it counts exactly the body bytes of blob GETs (whole,
// ranged, multi-range, failed), and nothing of manifests, HEADs or
// upload requests, while passing every answer on unchanged.
func TestProxyCounts(t *testing.T) {
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	manifest := []byte(`{"schemaVersion":2}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/bench/a/blobs/sha256:aa":
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
		case r.URL.Path == "/v2/bench/a/manifests/latest":
			w.Write(manifest)
		case strings.HasPrefix(r.URL.Path, "/v2/bench/a/blobs/uploads/"):
			w.Write([]byte("upload status that must not count"))
		default:
			http.Error(w, "blob unknown", http.StatusNotFound)
		}
	}))
	defer up.Close()
	p, err := StartProxy(strings.TrimPrefix(up.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	base := "http://" + p.Addr + "/v2/bench/a/"

	get := func(method, path, rng string) []byte {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	start := p.Counts()
	if b := get(http.MethodGet, "blobs/sha256:aa", ""); !bytes.Equal(b, blob) {
		t.Fatalf("whole blob through the proxy: %d bytes, not the blob", len(b))
	}
	if b := get(http.MethodGet, "blobs/sha256:aa", "bytes=100-199"); !bytes.Equal(b, blob[100:200]) {
		t.Fatalf("range through the proxy: %q", b)
	}
	// A multi-range answer counts its whole body (parts and their headers).
	req, _ := http.NewRequest(http.MethodGet, base+"blobs/sha256:aa", nil)
	req.Header.Set("Range", "bytes=0-9,1000-1019")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	multi, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(multi), params["boundary"])
	parts := 0
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multi-range answer through the proxy: %v", err)
		}
		io.Copy(io.Discard, part)
		parts++
	}
	if parts != 2 {
		t.Fatalf("multi-range answer has %d parts, want 2", parts)
	}
	missing := get(http.MethodGet, "blobs/sha256:bb", "")
	get(http.MethodHead, "blobs/sha256:aa", "")
	if b := get(http.MethodGet, "manifests/latest", ""); !bytes.Equal(b, manifest) {
		t.Fatalf("manifest through the proxy: %q", b)
	}
	get(http.MethodGet, "blobs/uploads/some-uuid", "")

	got := p.Counts().Sub(start)
	want := Counts{Bytes: int64(len(blob) + 100 + len(multi) + len(missing)), Requests: 4, Ranged: 2}
	if got != want {
		t.Errorf("counted %+v, want %+v", got, want)
	}
	if !isBlobGet(&http.Request{Method: http.MethodGet, URL: mustURL(t, "/v2/bench/a/blobs/sha256:aa")}) ||
		isBlobGet(&http.Request{Method: http.MethodGet, URL: mustURL(t, "/v2/bench/a/blobs/uploads/")}) ||
		isBlobGet(&http.Request{Method: http.MethodPut, URL: mustURL(t, "/v2/bench/a/blobs/sha256:aa")}) {
		t.Error("isBlobGet misclassifies requests")
	}
}

func mustURL(t *testing.T, p string) *url.URL {
	t.Helper()
	u, err := url.Parse(p)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
