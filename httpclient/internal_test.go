package httpclient

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestConnFailure classifies the errors a real http.Transport returns.
func TestConnFailure(t *testing.T) {
	refused := testutil.ClosedAddr(t)

	// closer accepts connections and closes each one without answering:
	// the client sees EOF before any response byte.
	closer := listen(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		c.Close()
	})
	// resetter accepts, reads the request and resets the connection.
	resetter := listen(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	// garbage answers something that is not HTTP: a protocol error.
	garbage := listen(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		_, _ = c.Write([]byte("SSH-2.0-OpenSSH\r\n\r\n"))
		c.Close()
	})
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer ok.Close()

	tests := []struct {
		name string
		addr string
		want bool
	}{
		{"connection refused", refused, true},
		{"closed before the response", closer, true},
		{"reset before the response", resetter, true},
		{"not HTTP", garbage, false},
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+tt.addr+"/", nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip(%s) succeeded, want an error", tt.addr)
			}
			t.Logf("RoundTrip(%s) = %v", tt.addr, err)
			if got := connFailure(err); got != tt.want {
				t.Errorf("connFailure(%v) = %v, want %v", err, got, tt.want)
			}
		})
	}
}

func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func TestReplayable(t *testing.T) {
	withBody := func(method string) *http.Request {
		r, _ := http.NewRequest(method, "http://hello/", strings.NewReader("x")) // sets GetBody
		return r
	}
	oneShot := func(method string) *http.Request {
		r, _ := http.NewRequest(method, "http://hello/", io.NopCloser(strings.NewReader("x")))
		return r
	}
	noBody := func(method string) *http.Request {
		r, _ := http.NewRequest(method, "http://hello/", nil)
		return r
	}
	keyed := func(key string) *http.Request {
		r := withBody(http.MethodPost)
		r.Header.Set(key, "42")
		return r
	}
	tests := []struct {
		name string
		r    *http.Request
		want bool
	}{
		{"GET", noBody(http.MethodGet), true},
		{"empty method", noBody(""), true},
		{"HEAD", noBody(http.MethodHead), true},
		{"OPTIONS", noBody(http.MethodOptions), true},
		{"TRACE", noBody(http.MethodTrace), true},
		{"DELETE", noBody(http.MethodDelete), true},
		{"PUT rewindable", withBody(http.MethodPut), true},
		{"PUT one-shot body", oneShot(http.MethodPut), false},
		{"POST", withBody(http.MethodPost), false},
		{"POST without body", noBody(http.MethodPost), false},
		{"PATCH", withBody(http.MethodPatch), false},
		{"POST with Idempotency-Key", keyed("Idempotency-Key"), true},
		{"POST with X-Idempotency-Key", keyed("X-Idempotency-Key"), true},
	}
	for _, tt := range tests {
		if got := replayable(tt.r); got != tt.want {
			t.Errorf("replayable(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestOutgoing(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		host     string // Request.Host as the caller sets it; "-" leaves NewRequest's
		wantHost string
	}{
		{"Host from the URL", "http://hello/x?y=1", "-", "10.0.0.1:8080"},
		{"Host empty", "http://hello/x?y=1", "", "10.0.0.1:8080"},
		{"URL port is dropped", "http://hello:9999/x?y=1", "-", "10.0.0.1:8080"},
		{"explicit Host kept", "https://hello/x?y=1", "hello.example.com", "hello.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			if tt.host != "-" {
				r.Host = tt.host
			}
			before := *r.URL
			beforeHost := r.Host
			o := outgoing(r, "10.0.0.1:8080", nil)
			if o.URL.Host != "10.0.0.1:8080" || o.URL.Scheme != before.Scheme || o.URL.Path != "/x" || o.URL.RawQuery != "y=1" {
				t.Errorf("outgoing(%q).URL = %v, want %s://10.0.0.1:8080/x?y=1", tt.url, o.URL, before.Scheme)
			}
			if o.Host != tt.wantHost {
				t.Errorf("outgoing(%q, Host %q).Host = %q, want %q", tt.url, tt.host, o.Host, tt.wantHost)
			}
			if *r.URL != before || r.Host != beforeHost {
				t.Errorf("outgoing modified the caller's request: URL %v, Host %q", r.URL, r.Host)
			}
		})
	}
}

// trackedBody counts Close calls.
type trackedBody struct {
	io.Reader
	closes int
}

func (b *trackedBody) Close() error { b.closes++; return nil }

type rwBody struct {
	trackedBody
	bytes.Buffer
}

func (b *rwBody) Read(p []byte) (int, error)  { return b.trackedBody.Read(p) }
func (b *rwBody) Write(p []byte) (int, error) { return b.Buffer.Write(p) }

func TestRespondDoneOnce(t *testing.T) {
	tests := []struct {
		name string
		use  func(t *testing.T, body io.ReadCloser)
	}{
		{"read to EOF, then closed twice", func(t *testing.T, b io.ReadCloser) {
			if _, err := io.ReadAll(b); err != nil {
				t.Fatal(err)
			}
			b.Close()
			b.Close()
		}},
		{"closed unread", func(t *testing.T, b io.ReadCloser) { b.Close() }},
		{"read to EOF, read again", func(t *testing.T, b io.ReadCloser) {
			_, _ = io.ReadAll(b)
			_, _ = b.Read(make([]byte, 1))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := pickOne(t)
			tb := &trackedBody{Reader: strings.NewReader("hello")}
			resp := respond(&http.Response{Body: tb}, ep)
			if got := ep.InFlight(); got != 1 {
				t.Fatalf("InFlight() before the body is used = %d, want 1", got)
			}
			tt.use(t, resp.Body)
			if got := ep.InFlight(); got != 0 {
				t.Errorf("InFlight() after the body is done = %d, want 0", got)
			}
		})
	}

	t.Run("no body", func(t *testing.T) {
		ep := pickOne(t)
		resp := respond(&http.Response{Body: http.NoBody}, ep)
		if got := ep.InFlight(); got != 0 || resp.Body != http.NoBody {
			t.Errorf("respond(NoBody): InFlight() = %d, Body %T, want 0 and NoBody", got, resp.Body)
		}
	})

	t.Run("writable body stays writable", func(t *testing.T) {
		ep := pickOne(t)
		rw := &rwBody{trackedBody: trackedBody{Reader: strings.NewReader("")}}
		resp := respond(&http.Response{StatusCode: http.StatusSwitchingProtocols, Body: rw}, ep)
		w, ok := resp.Body.(io.Writer)
		if !ok {
			t.Fatalf("respond(101).Body = %T, want an io.Writer", resp.Body)
		}
		_, _ = w.Write([]byte("ping"))
		if got := rw.Buffer.String(); got != "ping" {
			t.Errorf("written through the body: %q, want %q", got, "ping")
		}
		resp.Body.Close()
		if got := ep.InFlight(); got != 0 || rw.closes != 1 {
			t.Errorf("after Close: InFlight() = %d, closes %d, want 0 and 1", got, rw.closes)
		}
	})
}

// pickOne returns a P2C pick, which counts in flight until Done.
func pickOne(t *testing.T) balancer.Picked {
	t.Helper()
	s := balancer.NewSet([]beacon.Instance{{ID: "a", Service: "hello", Node: "n", Address: "127.0.0.1", Port: 1}}, nil)
	ep, err := balancer.NewP2C().Pick(s)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func TestErrorTimeout(t *testing.T) {
	var timeout net.Error = &net.OpError{Op: "dial", Err: &timeoutErr{}}
	tests := []struct {
		err  error
		want bool
	}{
		{timeout, true},
		{errors.New("refused"), false},
	}
	for _, tt := range tests {
		e := &Error{Err: tt.err}
		if got := e.Timeout(); got != tt.want {
			t.Errorf("(&Error{Err: %v}).Timeout() = %v, want %v", tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestErrorTimeoutThroughClient: http.Client's url.Error still reports a
// timeout when the Transport's Error wraps one.
func TestErrorTimeoutThroughClient(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "http://hello/", Err: &Error{Err: &net.OpError{Op: "dial", Err: timeoutErr{}}}}
	if !err.Timeout() {
		t.Errorf("(%v).Timeout() = false, want true", err)
	}
}
