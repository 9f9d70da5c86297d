package registrytest

// FakeAgent is Beacon's one fake HTTP agent, for RunHostile and for the
// request-shape tests of a backend: it misbehaves as a real agent cannot be
// made to, and shows the requests it received. Everywhere it is not told to
// misbehave it answers as a real agent would, so that a backend whose calls
// take several requests (consulkit's Register lists and removes stale
// checks) reaches the request under test.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
)

// bodyCap is the answer size every backend must accept, and not one byte
// more, when no option says otherwise (consulhttp and consulkit call it
// DefaultMaxBodyBytes).
const bodyCap = 32 << 20

// fakeToken is the ACL token clients of fake agents send; no error text,
// URL or body may contain it.
const fakeToken = "0f3c9a51-7d2e-4b8a-9c61-secret-fake-token"

// webEntry is one element of GET /v1/health/service/web as Consul sends it.
const webEntry = `{"Node":{"ID":"1f6f2c2e-0000-0000-0000-000000000000","Node":"node-1","Address":"10.0.0.1","Datacenter":"dc1"},` +
	`"Service":{"ID":"web-1","Service":"web","Tags":["v1"],"Address":"10.0.0.5","Port":8080,"Meta":{"version":"1"},"Weights":{"Passing":10,"Warning":1}},` +
	`"Checks":[{"Node":"node-1","CheckID":"serfHealth","Status":"passing"},{"Node":"node-1","CheckID":"service:web-1","Status":"passing"}]}`

// WebAnswer is a whole GET /v1/health/service/web answer as Consul sends
// it: one instance, web-1 on node-1 at 10.0.0.5:8080, tag v1, meta
// version=1, weights 10/1, its check and the node's passing.
const WebAnswer = "[" + webEntry + "]"

// MetaHeader is what Consul sends with every answer to a query: the index,
// whether there is a leader, and how long ago the server heard from it.
func MetaHeader(index string) http.Header {
	return http.Header{
		"X-Consul-Index":       {index},
		"X-Consul-Knownleader": {"true"},
		"X-Consul-Lastcontact": {"0"},
	}
}

// without returns a copy of h without key.
func without(h http.Header, key string) http.Header {
	h = h.Clone()
	h.Del(key)
	return h
}

// with returns a copy of h with key set to value.
func with(h http.Header, key, value string) http.Header {
	h = h.Clone()
	h.Set(key, value)
	return h
}

// Request is a request as a FakeAgent received it (the body up to 1 MiB).
type Request struct {
	Method     string
	RequestURI string // as sent on the wire, still escaped
	Path       string // decoded
	RawQuery   string
	Header     http.Header
	Body       []byte
}

// String returns the method and the request URI as sent.
func (r Request) String() string { return r.Method + " " + r.RequestURI }

// FakeAgent is an httptest server that records every request and answers
// with its handler. Its methods are safe for concurrent use.
type FakeAgent struct {
	srv *httptest.Server

	mu   sync.Mutex
	reqs []Request
}

// NewFakeAgent starts a fake agent on loopback, closed when the test ends.
// A nil handler answers every request as PlausibleAgent does.
func NewFakeAgent(t testing.TB, handler http.HandlerFunc) *FakeAgent {
	t.Helper()
	if handler == nil {
		handler = PlausibleAgent
	}
	f := &FakeAgent{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		f.mu.Lock()
		f.reqs = append(f.reqs, Request{
			Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body,
		})
		f.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// URL returns the fake's base URL, "http://127.0.0.1:port".
func (f *FakeAgent) URL() string { return f.srv.URL }

// Config returns cfg with the fake as its one address.
func (f *FakeAgent) Config(cfg consul.Config) consul.Config {
	cfg.Addresses = []string{f.URL()}
	return cfg
}

// Requests returns a copy of what the fake has received so far, in order.
func (f *FakeAgent) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.reqs...)
}

// RequestsTo returns the requests with this method whose decoded path
// starts with prefix.
func (f *FakeAgent) RequestsTo(method, prefix string) []Request {
	var out []Request
	for _, r := range f.Requests() {
		if r.Method == method && strings.HasPrefix(r.Path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// fakeRegistry returns the backend under test talking to f, built from
// cfg with f's address filled in.
func (s suite) fakeRegistry(t *testing.T, f *FakeAgent, cfg consul.Config) beacon.Registry {
	t.Helper()
	return s.registry(t, f.Config(cfg))
}

// PlausibleAgent answers as an agent that knows nothing does: an empty
// health answer, no checks, and 200 to every change.
func PlausibleAgent(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/health/service/"):
		Answer(http.StatusOK, MetaHeader("1"), "[]")(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/agent/checks":
		Answer(http.StatusOK, MetaHeader("1"), "{}")(w, r)
	default:
		Answer(http.StatusOK, nil, "")(w, r)
	}
}

// Answer is a handler that sends exactly this status, header and body.
func Answer(status int, h http.Header, body string) http.HandlerFunc {
	return streamed(status, h, func(w io.Writer) { _, _ = io.WriteString(w, body) })
}

// streamed is a handler that sends this status and header, then whatever
// write writes, without a Content-Length: the body arrives as it is made.
func streamed(status int, h http.Header, write func(io.Writer)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for k, vs := range h {
			w.Header()[k] = vs
		}
		w.WriteHeader(status)
		write(w)
	}
}

// forCall answers the request c is about (its method and path) with h, and
// every other request as PlausibleAgent does.
func forCall(c call, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == c.method && r.URL.Path == c.path {
			h(w, r)
			return
		}
		PlausibleAgent(w, r)
	}
}

// padded writes prefix and then spaces, size bytes in all: JSON whitespace,
// which a decoder must read through to learn that nothing follows.
func padded(prefix string, size int) func(io.Writer) {
	return func(w io.Writer) {
		_, _ = io.WriteString(w, prefix)
		spaces := strings.Repeat(" ", 64<<10)
		for left := size - len(prefix); left > 0; left -= len(spaces) {
			if _, err := io.WriteString(w, spaces[:min(left, len(spaces))]); err != nil {
				return // the client has gone
			}
		}
	}
}

// entries writes a well-formed health answer of webEntry repeated until it
// is more than size bytes long.
func entries(size int) func(io.Writer) {
	return func(w io.Writer) {
		_, _ = io.WriteString(w, "["+webEntry)
		for n := 1 + len(webEntry); n < size; n += 1 + len(webEntry) {
			if _, err := io.WriteString(w, ","+webEntry); err != nil {
				return
			}
		}
		_, _ = io.WriteString(w, "]")
	}
}

// hungAgent listens on loopback and accepts connections. With greeting
// empty it never answers; else it reads each request, writes greeting, and
// falls silent. Everything is closed when the test ends. It returns the
// address to dial.
func hungAgent(t *testing.T, greeting string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				// Accepted as the test ended: nobody would close it.
				mu.Unlock()
				conn.Close()
				return
			}
			conns = append(conns, conn)
			mu.Unlock()
			if greeting == "" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				_, _ = io.WriteString(conn, greeting)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, conn := range conns {
			conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
