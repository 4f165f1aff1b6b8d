package registry

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Proxy is a reverse proxy on 127.0.0.1 in front of a registry that
// counts what the registry sends for blob GETs: the response body bytes
// (ranged or not, whatever the status) and the requests. Everything else
// (manifests, /v2/, HEADs, pushes) passes uncounted.
type Proxy struct {
	// Addr is its host:port.
	Addr   string
	srv    *http.Server
	bytes  atomic.Int64
	gets   atomic.Int64
	ranged atomic.Int64
}

// Counts are a proxy's counters.
type Counts struct {
	// Bytes are the response body bytes of blob GETs.
	Bytes int64
	// Requests are the blob GETs, Ranged those with a Range header.
	Requests, Ranged int64
}

// Sub is c − o, the counts between two readings.
func (c Counts) Sub(o Counts) Counts {
	return Counts{Bytes: c.Bytes - o.Bytes, Requests: c.Requests - o.Requests, Ranged: c.Ranged - o.Ranged}
}

// isBlobGet says whether a request reads a blob: GET /v2/<name>/blobs/<digest>
// (not an upload's status, /blobs/uploads/).
func isBlobGet(req *http.Request) bool {
	if req.Method != http.MethodGet || !strings.HasPrefix(req.URL.Path, "/v2/") {
		return false
	}
	_, rest, ok := strings.Cut(req.URL.Path, "/blobs/")
	return ok && !strings.HasPrefix(rest, "uploads/") && rest != "uploads"
}

// StartProxy starts a counting proxy in front of the registry at target
// (host:port, plain HTTP).
func StartProxy(target string) (*Proxy, error) {
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.ModifyResponse = func(resp *http.Response) error {
		if !isBlobGet(resp.Request) {
			return nil
		}
		p.gets.Add(1)
		if resp.Request.Header.Get("Range") != "" {
			p.ranged.Add(1)
		}
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &p.bytes}
		return nil
	}
	rp.ErrorLog = log.New(io.Discard, "", 0) // a client that hangs up early is no news
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("counting proxy: %w", err)
	}
	p.Addr = ln.Addr().String()
	p.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 30 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// Counts returns the counters so far.
func (p *Proxy) Counts() Counts {
	return Counts{Bytes: p.bytes.Load(), Requests: p.gets.Load(), Ranged: p.ranged.Load()}
}

// Ref is the docker:// reference of repo:tag through the proxy.
func (p *Proxy) Ref(repo, tag string) string {
	return "docker://" + p.Addr + "/" + repo + ":" + tag
}

// Stop closes the proxy and its connections.
func (p *Proxy) Stop() { p.srv.Close() }

// countingBody adds what is read through it to n: the bytes the proxy
// took from the registry to pass on.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.n.Add(int64(n))
	return n, err
}
