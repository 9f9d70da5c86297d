package consulhttp_test

// Fault-injecting fakes, for what a real Consul agent cannot be made to do:
// send garbage, answer with arbitrary status codes, hang, redirect, or show
// the exact request it received. Behaviour against a real agent is tested in
// agent_test.go.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
)

// faultWait bounds every wait on a channel in this file: generous, so a
// loaded machine does not flake, and still a bound.
const faultWait = 10 * time.Second

// fakeToken is the ACL token the fakes' clients send; no error text and no
// URL may contain it.
const fakeToken = "0f3c9a51-7d2e-4b8a-9c61-secret-fake-token"

// webAnswer is one entry as GET /v1/health/service/web returns it.
const webAnswer = `[{"Node":{"ID":"1f6f2c2e-0000-0000-0000-000000000000","Node":"node-1","Address":"10.0.0.1","Datacenter":"dc1"},` +
	`"Service":{"ID":"web-1","Service":"web","Tags":["v1"],"Address":"10.0.0.5","Port":8080,"Meta":{"version":"1"},"Weights":{"Passing":10,"Warning":1}},` +
	`"Checks":[{"Node":"node-1","CheckID":"serfHealth","Status":"passing"},{"Node":"node-1","CheckID":"service:web-1","Status":"passing"}]}]`

// seenRequest is what a fake agent received.
type seenRequest struct {
	Method     string
	RequestURI string // as sent on the wire, still escaped
	Path       string // decoded
	RawQuery   string
	Header     http.Header
	Body       []byte
}

// fakeAgent is an httptest server that records every request and answers
// with its handler.
type fakeAgent struct {
	srv *httptest.Server

	mu   sync.Mutex
	reqs []seenRequest
}

// newFakeAgent starts a fake agent; a nil handler answers every request
// with 200 and an empty health answer. It is closed when the test ends.
func newFakeAgent(t *testing.T, handler http.HandlerFunc) *fakeAgent {
	t.Helper()
	if handler == nil {
		handler = answer(http.StatusOK, indexHeader("1"), "[]")
	}
	f := &fakeAgent{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, seenRequest{
			Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body,
		})
		f.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// requests returns a copy of what the fake has received so far.
func (f *fakeAgent) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.reqs...)
}

// only returns the only request the fake received, failing otherwise.
func (f *fakeAgent) only(t *testing.T) seenRequest {
	t.Helper()
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("fake agent saw %d requests, want 1: %+v", len(reqs), reqs)
	}
	return reqs[0]
}

// client returns a client for the fake built from cfg (its address is
// filled in), closed when the test ends.
func (f *fakeAgent) client(t *testing.T, cfg consul.Config, opts ...consulhttp.Option) *consulhttp.Client {
	t.Helper()
	cfg.Addresses = []string{f.srv.URL}
	return newFaultClient(t, cfg, opts...)
}

func newFaultClient(t *testing.T, cfg consul.Config, opts ...consulhttp.Option) *consulhttp.Client {
	t.Helper()
	c, err := consulhttp.New(cfg, opts...)
	if err != nil {
		t.Fatalf("consulhttp.New(%+v) = %v", cfg, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func indexHeader(index string) http.Header {
	return http.Header{"X-Consul-Index": {index}}
}

// answer is a handler that sends exactly this status, header and body.
func answer(status int, h http.Header, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for k, vs := range h {
			w.Header()[k] = vs
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// call is one client method, with fixed arguments.
type call struct {
	name string
	do   func(context.Context, *consulhttp.Client) error
}

var (
	callRegister = call{"Register", func(ctx context.Context, c *consulhttp.Client) error {
		return c.Register(ctx, beacon.Registration{
			ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080,
			Checks: []beacon.Check{{TTL: 15 * time.Second}},
		})
	}}
	callDeregister = call{"Deregister", func(ctx context.Context, c *consulhttp.Client) error {
		return c.Deregister(ctx, "web-1")
	}}
	callUpdateTTL = call{"UpdateTTL", func(ctx context.Context, c *consulhttp.Client) error {
		return c.UpdateTTL(ctx, "service:web-1", beacon.HealthPassing, "ok")
	}}
	callInstances = call{"Instances", func(ctx context.Context, c *consulhttp.Client) error {
		_, _, err := c.Instances(ctx, beacon.Query{Service: "web"})
		return err
	}}
)

// within runs f in a goroutine and returns its error, failing the test if
// f has not returned within faultWait.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(faultWait):
		t.Fatalf("%s has not returned after %v", what, faultWait)
		return nil
	}
}

func TestInstancesMalformedAnswer(t *testing.T) {
	const maxBody = 1024
	// bigAnswer is a well-formed answer larger than maxBody.
	bigAnswer := "[" + strings.Repeat(webAnswer[1:len(webAnswer)-1]+",", 5) + webAnswer[1:]
	if len(bigAnswer) <= maxBody {
		t.Fatalf("bigAnswer is %d bytes, want more than %d", len(bigAnswer), maxBody)
	}
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
	}{
		{"truncated JSON", indexHeader("5"), webAnswer[:len(webAnswer)/2]},
		{"truncated after the array opens", indexHeader("5"), "["},
		{"empty body", indexHeader("5"), ""},
		{"HTML with status 200", http.Header{"X-Consul-Index": {"5"}, "Content-Type": {"text/html"}}, "<html><body><h1>502 Bad Gateway</h1></body></html>"},
		{"object instead of array", indexHeader("5"), `{"error":"nope"}`},
		{"no X-Consul-Index", http.Header{}, webAnswer},
		{"X-Consul-Index abc", indexHeader("abc"), webAnswer},
		{"X-Consul-Index -1", indexHeader("-1"), webAnswer},
		{"X-Consul-Index 2^64", indexHeader("18446744073709551616"), webAnswer},
		{"X-Consul-Index huge", indexHeader(strings.Repeat("9", 400)), webAnswer},
		{"X-Consul-Index float", indexHeader("1.5"), webAnswer},
		{"X-Consul-LastContact garbage", http.Header{"X-Consul-Index": {"5"}, "X-Consul-Lastcontact": {"soon"}}, webAnswer},
		{"X-Consul-LastContact negative", http.Header{"X-Consul-Index": {"5"}, "X-Consul-Lastcontact": {"-3"}}, webAnswer},
		{"X-Consul-LastContact huge", http.Header{"X-Consul-Index": {"5"}, "X-Consul-Lastcontact": {"99999999999999999999"}}, webAnswer},
		{"null entry", indexHeader("5"), "[null]"},
		{"entry without Node", indexHeader("5"), `[{"Service":{"ID":"web-1","Service":"web"},"Checks":[]}]`},
		{"entry without Service", indexHeader("5"), `[{"Node":{"Node":"node-1"},"Checks":[]}]`},
		{"entry with null Service", indexHeader("5"), `[{"Node":{"Node":"node-1"},"Service":null}]`},
		{"service without ID", indexHeader("5"), `[{"Node":{"Node":"node-1"},"Service":{"Service":"web"}}]`},
		{"wrongly typed Port", indexHeader("5"), `[{"Node":{"Node":"n"},"Service":{"ID":"web-1","Port":"80"}}]`},
		{"second array after the first", indexHeader("5"), "[] []"},
		{"garbage after the array", indexHeader("5"), webAnswer + "garbage"},
		{"object after the array", indexHeader("5"), webAnswer + `{}`},
		{"closing bracket after the array", indexHeader("5"), "[]]"},
		{"larger than the cap", indexHeader("5"), bigAnswer},
		{"one byte over the cap", indexHeader("5"), "[]" + strings.Repeat(" ", maxBody-1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAgent(t, answer(http.StatusOK, tc.header, tc.body))
			c := f.client(t, consul.Config{Token: fakeToken}, consulhttp.WithMaxBodyBytes(maxBody))
			q := beacon.Query{Service: "web"}
			insts, meta, err := c.Instances(context.Background(), q)
			if !errors.Is(err, beacon.ErrMalformedResponse) {
				t.Fatalf("Instances(%+v) = %v, want an error matching beacon.ErrMalformedResponse", q, err)
			}
			if insts != nil || meta != (beacon.QueryMeta{}) {
				t.Errorf("Instances(%+v) = %v, %+v with error %v, want nothing", q, insts, meta, err)
			}
			if strings.Contains(err.Error(), fakeToken) {
				t.Errorf("Instances(%+v) error %q contains the token", q, err)
			}
		})
	}
}

// TestInstancesWellFormedAnswer proves the fakes above fail for the reason
// each case names: the same fake with a good answer succeeds.
func TestInstancesWellFormedAnswer(t *testing.T) {
	const maxBody = 1024
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		want   []beacon.Instance
		meta   beacon.QueryMeta
	}{
		{
			name:   "one entry",
			header: http.Header{"X-Consul-Index": {"42"}, "X-Consul-Knownleader": {"true"}, "X-Consul-Lastcontact": {"15"}},
			body:   webAnswer,
			want: []beacon.Instance{{
				ID: "web-1", Service: "web", Node: "node-1", Address: "10.0.0.5", Port: 8080,
				Tags: []string{"v1"}, Meta: map[string]string{"version": "1"},
				Weights: beacon.Weights{Passing: 10, Warning: 1}, Health: beacon.HealthPassing,
			}},
			meta: beacon.QueryMeta{LastIndex: 42, KnownLeader: true, LastContact: 15 * time.Millisecond},
		},
		{
			name:   "node address when the service has none",
			header: indexHeader("7"),
			body:   `[{"Node":{"Node":"node-1","Address":"10.0.0.1"},"Service":{"ID":"web-1","Service":"web","Port":80},"Checks":[{"Status":"passing"},{"Status":"maintenance"}]}]`,
			want: []beacon.Instance{{
				ID: "web-1", Service: "web", Node: "node-1", Address: "10.0.0.1", Port: 80,
				Health: beacon.HealthCritical,
			}},
			meta: beacon.QueryMeta{LastIndex: 7},
		},
		{"empty", indexHeader("3"), "[]", []beacon.Instance{}, beacon.QueryMeta{LastIndex: 3}},
		{"exactly at the cap", indexHeader("3"), "[]" + strings.Repeat(" ", maxBody-2), []beacon.Instance{}, beacon.QueryMeta{LastIndex: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAgent(t, answer(http.StatusOK, tc.header, tc.body))
			c := f.client(t, consul.Config{}, consulhttp.WithMaxBodyBytes(maxBody))
			q := beacon.Query{Service: "web"}
			insts, meta, err := c.Instances(context.Background(), q)
			if err != nil {
				t.Fatalf("Instances(%+v) = %v, want no error", q, err)
			}
			if !reflect.DeepEqual(insts, tc.want) {
				t.Errorf("Instances(%+v) = %+v, want %+v", q, insts, tc.want)
			}
			if meta != tc.meta {
				t.Errorf("Instances(%+v) meta = %+v, want %+v", q, meta, tc.meta)
			}
		})
	}
}

// allSentinels are the sentinels a status can map onto; a status error must
// match its own and no other.
var allSentinels = []error{beacon.ErrNotFound, beacon.ErrPermissionDenied, beacon.ErrRateLimited, beacon.ErrUnavailable, beacon.ErrMalformedResponse, beacon.ErrInvalid}

func TestStatusMapping(t *testing.T) {
	for _, tc := range []struct {
		name    string
		call    call
		status  int
		message string
		want    error // nil: the call succeeds
		path    string
	}{
		{"403 on Register", callRegister, http.StatusForbidden,
			`Permission denied: token with AccessorID '5b1f0e6a-2a6f-4a1b-9f61-0c9ad3c0e0a1' lacks permission 'service:write' on "web"`,
			beacon.ErrPermissionDenied, "/v1/agent/service/register"},
		{"403 on Instances", callInstances, http.StatusForbidden, "ACL not found", beacon.ErrPermissionDenied, "/v1/health/service/web"},
		{"401 on Deregister", callDeregister, http.StatusUnauthorized, "Unauthorized", beacon.ErrPermissionDenied, "/v1/agent/service/deregister/web-1"},
		{"429 on Instances", callInstances, http.StatusTooManyRequests,
			"Your IP is issuing too many concurrent connections, please rate limit your calls", beacon.ErrRateLimited, "/v1/health/service/web"},
		{"429 on UpdateTTL", callUpdateTTL, http.StatusTooManyRequests, "rate limit exceeded", beacon.ErrRateLimited, "/v1/agent/check/update/service:web-1"},
		{"500 on Register", callRegister, http.StatusInternalServerError, "rpc error making call: No cluster leader", beacon.ErrUnavailable, "/v1/agent/service/register"},
		{"500 on Instances", callInstances, http.StatusInternalServerError, "No cluster leader", beacon.ErrUnavailable, "/v1/health/service/web"},
		{"503 on Instances", callInstances, http.StatusServiceUnavailable, "Service Unavailable", beacon.ErrUnavailable, "/v1/health/service/web"},
		{"503 on UpdateTTL", callUpdateTTL, http.StatusServiceUnavailable, "", beacon.ErrUnavailable, "/v1/agent/check/update/service:web-1"},
		{"404 on UpdateTTL", callUpdateTTL, http.StatusNotFound,
			`Unknown check ID "service:web-1". Ensure that the check ID is passed, not the check name.`, beacon.ErrNotFound, "/v1/agent/check/update/service:web-1"},
		{"404 on Deregister", callDeregister, http.StatusNotFound, `Unknown service ID "web-1". Ensure that the service ID is passed, not the service name.`, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAgent(t, answer(tc.status, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, tc.message+"\n"))
			c := f.client(t, consul.Config{Token: fakeToken})
			err := tc.call.do(context.Background(), c)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("%s() after %d = %v, want nil", tc.call.name, tc.status, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s() after %d = %v, want an error matching %v", tc.call.name, tc.status, err, tc.want)
			}
			for _, other := range allSentinels {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("%s() after %d = %v, matches %v too", tc.call.name, tc.status, err, other)
				}
			}
			var se *beacon.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("%s() after %d = %v (%T), want a *beacon.StatusError in the chain", tc.call.name, tc.status, err, err)
			}
			if se.StatusCode != tc.status {
				t.Errorf("%s() StatusError.StatusCode = %d, want %d", tc.call.name, se.StatusCode, tc.status)
			}
			if se.Message != tc.message {
				t.Errorf("%s() StatusError.Message = %q, want %q", tc.call.name, se.Message, tc.message)
			}
			if se.Path != tc.path {
				t.Errorf("%s() StatusError.Path = %q, want %q", tc.call.name, se.Path, tc.path)
			}
			if tc.message != "" && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("%s() error %q does not carry Consul's message %q", tc.call.name, err, tc.message)
			}
			if strings.Contains(err.Error(), fakeToken) {
				t.Errorf("%s() error %q contains the token", tc.call.name, err)
			}
		})
	}
}

func TestStatusMessageIsCapped(t *testing.T) {
	long := strings.Repeat("x", 64<<10)
	f := newFakeAgent(t, answer(http.StatusInternalServerError, nil, long))
	c := f.client(t, consul.Config{})
	err := callRegister.do(context.Background(), c)
	var se *beacon.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Register() after a 500 = %v, want a *beacon.StatusError", err)
	}
	if len(se.Message) == 0 || len(se.Message) > 4<<10 {
		t.Errorf("Register() StatusError.Message is %d bytes, want 1 to %d", len(se.Message), 4<<10)
	}
}

func TestUnreachableAgentIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	c := newFaultClient(t, consul.Config{Addresses: []string{addr}, Token: fakeToken})
	for _, cl := range []call{callRegister, callDeregister, callUpdateTTL, callInstances} {
		err := within(t, cl.name, func() error { return cl.do(context.Background(), c) })
		if !errors.Is(err, beacon.ErrUnavailable) {
			t.Errorf("%s() against a closed port = %v, want an error matching beacon.ErrUnavailable", cl.name, err)
		} else if strings.Contains(err.Error(), fakeToken) {
			t.Errorf("%s() error %q contains the token", cl.name, err)
		}
	}
}

func TestTokenOnlyInHeader(t *testing.T) {
	for _, cl := range []call{callRegister, callDeregister, callUpdateTTL, callInstances} {
		t.Run(cl.name, func(t *testing.T) {
			f := newFakeAgent(t, nil)
			c := f.client(t, consul.Config{Token: fakeToken})
			if err := cl.do(context.Background(), c); err != nil {
				t.Fatalf("%s() = %v, want nil", cl.name, err)
			}
			r := f.only(t)
			if got := r.Header.Values("X-Consul-Token"); len(got) != 1 || got[0] != fakeToken {
				t.Errorf("%s() sent X-Consul-Token %q, want exactly [%q]", cl.name, got, fakeToken)
			}
			if strings.Contains(r.RequestURI, fakeToken) {
				t.Errorf("%s() request URI %q contains the token", cl.name, r.RequestURI)
			}
			if q, _ := url.ParseQuery(r.RawQuery); q.Has("token") {
				t.Errorf("%s() query %q has a token parameter", cl.name, r.RawQuery)
			}
			if strings.Contains(string(r.Body), fakeToken) {
				t.Errorf("%s() body %q contains the token", cl.name, r.Body)
			}
			if got := r.Header.Get("Authorization"); got != "" {
				t.Errorf("%s() sent Authorization %q, want none", cl.name, got)
			}
		})
	}
}

func TestNoTokenNoHeader(t *testing.T) {
	f := newFakeAgent(t, nil)
	c := f.client(t, consul.Config{})
	if err := callInstances.do(context.Background(), c); err != nil {
		t.Fatalf("Instances() = %v, want nil", err)
	}
	if r := f.only(t); r.Header.Values("X-Consul-Token") != nil {
		t.Errorf("Instances() without a token sent X-Consul-Token %q, want none", r.Header.Values("X-Consul-Token"))
	}
}

func TestTokenFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	// The tokens differ in length, so the rewrite is noticed even where the
	// file system's modification times are coarse.
	const first, second = "first-token", "second-token-after-rotation"
	if err := os.WriteFile(path, []byte(first+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeAgent(t, nil)
	c := f.client(t, consul.Config{Token: "static-token-loses", TokenFile: path})
	if err := callDeregister.do(context.Background(), c); err != nil {
		t.Fatalf("Deregister() = %v, want nil", err)
	}
	if err := os.WriteFile(path, []byte(second+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := callDeregister.do(context.Background(), c); err != nil {
		t.Fatalf("Deregister() after rotation = %v, want nil", err)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("fake agent saw %d requests, want 2", len(reqs))
	}
	for i, want := range []string{first, second} {
		if got := reqs[i].Header.Get("X-Consul-Token"); got != want {
			t.Errorf("request %d X-Consul-Token = %q, want %q", i, got, want)
		}
	}

	// A token file that has gone is an error, not a request without it.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := callDeregister.do(context.Background(), c); err == nil {
		t.Errorf("Deregister() with the token file removed = nil, want an error")
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("fake agent saw %d requests after the token file was removed, want still 2", n)
	}
}

// TestRedirectNotFollowed: net/http forwards custom headers such as
// X-Consul-Token on redirects, even to another host. The agent API never
// redirects, so the client must not follow one.
func TestRedirectNotFollowed(t *testing.T) {
	for _, cl := range []call{callRegister, callInstances} {
		t.Run(cl.name, func(t *testing.T) {
			elsewhere := newFakeAgent(t, nil)
			f := newFakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, elsewhere.srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			})
			c := f.client(t, consul.Config{Token: fakeToken})
			err := cl.do(context.Background(), c)
			var se *beacon.StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusTemporaryRedirect {
				t.Errorf("%s() answered with a redirect = %v, want a *beacon.StatusError with status 307", cl.name, err)
			}
			if n := len(elsewhere.requests()); n != 0 {
				t.Errorf("%s() followed the redirect: its target saw %d requests, want 0", cl.name, n)
			}
		})
	}
}

func TestValidationSendsNothing(t *testing.T) {
	valid := func() beacon.Registration {
		return beacon.Registration{
			ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080,
			Checks: []beacon.Check{{HTTP: "http://10.0.0.5:8080/health", Interval: 10 * time.Second}},
		}
	}
	register := func(edit func(*beacon.Registration)) func(context.Context, *consulhttp.Client) error {
		return func(ctx context.Context, c *consulhttp.Client) error {
			r := valid()
			edit(&r)
			return c.Register(ctx, r)
		}
	}
	instances := func(q beacon.Query) func(context.Context, *consulhttp.Client) error {
		return func(ctx context.Context, c *consulhttp.Client) error {
			_, _, err := c.Instances(ctx, q)
			return err
		}
	}
	manyMeta := make(map[string]string, beacon.MaxMetaPairs+1)
	for i := range beacon.MaxMetaPairs + 1 {
		manyMeta["k"+strconv.Itoa(i)] = "v"
	}
	longKey := strings.Repeat("k", beacon.MaxMetaKeyLen+1)
	metaField := func(k string) string { return "Meta[" + strconv.Quote(k) + "]" }

	for _, tc := range []struct {
		name  string
		do    func(context.Context, *consulhttp.Client) error
		field string
	}{
		{"meta over 64 pairs", register(func(r *beacon.Registration) { r.Meta = manyMeta }), "Meta"},
		{"meta key over 128 characters", register(func(r *beacon.Registration) { r.Meta = map[string]string{longKey: "v"} }), metaField(longKey)},
		{"meta key with a dot", register(func(r *beacon.Registration) { r.Meta = map[string]string{"a.b": "v"} }), metaField("a.b")},
		{"meta key with a space", register(func(r *beacon.Registration) { r.Meta = map[string]string{"a b": "v"} }), metaField("a b")},
		{"meta key with the consul- prefix", register(func(r *beacon.Registration) { r.Meta = map[string]string{"consul-version": "v"} }), metaField("consul-version")},
		{"meta value over 512 characters", register(func(r *beacon.Registration) {
			r.Meta = map[string]string{"k": strings.Repeat("v", beacon.MaxMetaValueLen+1)}
		}), metaField("k")},
		{"service name with an underscore", register(func(r *beacon.Registration) { r.Service = "web_api" }), "Service"},
		{"service name with a dot", register(func(r *beacon.Registration) { r.Service = "web.api" }), "Service"},
		{"empty service name", register(func(r *beacon.Registration) { r.Service = "" }), "Service"},
		{"service name over 63 characters", register(func(r *beacon.Registration) { r.Service = strings.Repeat("w", 64) }), "Service"},
		{"DeregisterCriticalAfter 30s", register(func(r *beacon.Registration) { r.Checks[0].DeregisterCriticalAfter = 30 * time.Second }), "Checks[0].DeregisterCriticalAfter"},
		{"Weights.Passing 0", register(func(r *beacon.Registration) { r.Weights = beacon.Weights{Passing: 0, Warning: 1} }), "Weights.Passing"},
		{"Weights.Warning negative", register(func(r *beacon.Registration) { r.Weights = beacon.Weights{Passing: 1, Warning: -1} }), "Weights.Warning"},
		{"interval under a second", register(func(r *beacon.Registration) { r.Checks[0].Interval = 500 * time.Millisecond }), "Checks[0].Interval"},
		{"empty registration ID", register(func(r *beacon.Registration) { r.ID = "" }), "ID"},
		{"WaitTime over 10m", instances(beacon.Query{Service: "web", WaitIndex: 5, WaitTime: beacon.MaxWaitTime + time.Second}), "WaitTime"},
		{"query with a bad service name", instances(beacon.Query{Service: "web/../../v1/acl"}), "Service"},
		{"bad TTL status", func(ctx context.Context, c *consulhttp.Client) error {
			return c.UpdateTTL(ctx, "service:web-1", beacon.Health("ok"), "")
		}, "Status"},
		{"empty check ID", func(ctx context.Context, c *consulhttp.Client) error {
			return c.UpdateTTL(ctx, "", beacon.HealthPassing, "")
		}, "CheckID"},
		{"empty deregister ID", func(ctx context.Context, c *consulhttp.Client) error {
			return c.Deregister(ctx, "")
		}, "ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAgent(t, nil)
			c := f.client(t, consul.Config{})
			err := tc.do(context.Background(), c)
			var ve *beacon.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("%s: error = %v, want a *beacon.ValidationError", tc.name, err)
			}
			if ve.Field != tc.field {
				t.Errorf("%s: ValidationError.Field = %q, want %q", tc.name, ve.Field, tc.field)
			}
			if !errors.Is(err, beacon.ErrInvalid) {
				t.Errorf("%s: error %v does not match beacon.ErrInvalid", tc.name, err)
			}
			if n := len(f.requests()); n != 0 {
				t.Errorf("%s: fake agent saw %d requests, want 0", tc.name, n)
			}
		})
	}
}

func TestReservedCharactersInIDs(t *testing.T) {
	for _, id := range []string{"a/b", "x#y", "p?q", "100%", "sp ace", "a/../../acl", "ünï"} {
		for _, tc := range []struct {
			method string
			prefix string
			do     func(context.Context, *consulhttp.Client) error
		}{
			{"Deregister", "/v1/agent/service/deregister/", func(ctx context.Context, c *consulhttp.Client) error {
				return c.Deregister(ctx, id)
			}},
			{"UpdateTTL", "/v1/agent/check/update/", func(ctx context.Context, c *consulhttp.Client) error {
				return c.UpdateTTL(ctx, id, beacon.HealthPassing, "")
			}},
		} {
			t.Run(tc.method+"/"+id, func(t *testing.T) {
				f := newFakeAgent(t, nil)
				c := f.client(t, consul.Config{})
				if err := tc.do(context.Background(), c); err != nil {
					t.Fatalf("%s(%q) = %v, want nil", tc.method, id, err)
				}
				r := f.only(t)
				if want := tc.prefix + url.PathEscape(id); r.RequestURI != want {
					t.Errorf("%s(%q) request URI = %q, want %q", tc.method, id, r.RequestURI, want)
				}
				if want := tc.prefix + id; r.Path != want {
					t.Errorf("%s(%q) decoded path = %q, want %q", tc.method, id, r.Path, want)
				}
				if r.RawQuery != "" {
					t.Errorf("%s(%q) query = %q, want none", tc.method, id, r.RawQuery)
				}
			})
		}
	}
}

// hungAgent listens on loopback and accepts connections; with greeting
// empty it never answers, else it reads the request, writes greeting, and
// then falls silent. Everything is closed when the test ends.
func hungAgent(t *testing.T, greeting string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
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
		for _, conn := range conns {
			conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestHungAgent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		greeting string
		call     call
		// unavailable: the error must match beacon.ErrUnavailable.
		unavailable bool
	}{
		{"Instances, no answer at all", "", callInstances, true},
		{"Register, no answer at all", "", callRegister, true},
		{"Instances, headers then silence", "HTTP/1.1 200 OK\r\nX-Consul-Index: 5\r\nContent-Length: 1000\r\n\r\n[", callInstances, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := hungAgent(t, tc.greeting)
			c := newFaultClient(t, consul.Config{Addresses: []string{addr}, Token: fakeToken, Timeout: 300 * time.Millisecond})
			err := within(t, tc.call.name+"() against a hung agent", func() error {
				return tc.call.do(context.Background(), c)
			})
			if err == nil {
				t.Fatalf("%s() against a hung agent = nil, want an error", tc.call.name)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s() against a hung agent = %v, want an error matching context.DeadlineExceeded", tc.call.name, err)
			}
			if tc.unavailable && !errors.Is(err, beacon.ErrUnavailable) {
				t.Errorf("%s() against a hung agent = %v, want an error matching beacon.ErrUnavailable", tc.call.name, err)
			}
			if strings.Contains(err.Error(), fakeToken) {
				t.Errorf("%s() error %q contains the token", tc.call.name, err)
			}
		})
	}
}

// TestCallerDeadlineIsNotUnavailable: when the caller's own context ends
// first, the error says so and does not blame the agent.
func TestCallerDeadlineIsNotUnavailable(t *testing.T) {
	addr := hungAgent(t, "")
	c := newFaultClient(t, consul.Config{Addresses: []string{addr}}) // default 10 s request timeout
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := within(t, "Instances() with a short caller deadline", func() error { return callInstances.do(ctx, c) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Instances() with a short caller deadline = %v, want an error matching context.DeadlineExceeded", err)
	}
	if errors.Is(err, beacon.ErrUnavailable) {
		t.Errorf("Instances() with a short caller deadline = %v, want no match for beacon.ErrUnavailable", err)
	}
}

func TestBlockingTimeoutExceedsWait(t *testing.T) {
	cfg := consul.Config{Timeout: 300 * time.Millisecond}
	for _, wait := range []time.Duration{time.Millisecond, time.Second, 2 * time.Second, 5 * time.Minute, beacon.MaxWaitTime} {
		if got := cfg.BlockingTimeout(wait); got <= wait*17/16 {
			t.Errorf("BlockingTimeout(%v) = %v, want more than %v", wait, got, wait*17/16)
		}
	}
	// Zero means Consul's default wait of five minutes.
	if got, floor := cfg.BlockingTimeout(0), 5*time.Minute*17/16; got <= floor {
		t.Errorf("BlockingTimeout(0) = %v, want more than %v", got, floor)
	}
}

// deadlineRecorder is a RoundTripper that notes each request's deadline
// and answers with an empty health list.
type deadlineRecorder struct {
	mu        sync.Mutex
	deadlines []time.Time
}

func (d *deadlineRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	dl, ok := r.Context().Deadline()
	if !ok {
		dl = time.Time{}
	}
	d.mu.Lock()
	d.deadlines = append(d.deadlines, dl)
	d.mu.Unlock()
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: indexHeader("9"), Body: io.NopCloser(strings.NewReader("[]")), Request: r,
	}, nil
}

// TestRequestDeadlines checks the deadline each request carries, without
// timing anything: it lies between start+d and end+d, where start and end
// bracket the call.
func TestRequestDeadlines(t *testing.T) {
	cfg := consul.Config{Addresses: []string{"127.0.0.1:1"}, Timeout: 300 * time.Millisecond}
	for _, tc := range []struct {
		name string
		q    beacon.Query
		want time.Duration
	}{
		{"non-blocking", beacon.Query{Service: "web"}, cfg.Timeout},
		{"non-blocking ignores WaitTime", beacon.Query{Service: "web", WaitTime: time.Minute}, cfg.Timeout},
		{"blocking 2s", beacon.Query{Service: "web", WaitIndex: 5, WaitTime: 2 * time.Second}, cfg.BlockingTimeout(2 * time.Second)},
		{"blocking default wait", beacon.Query{Service: "web", WaitIndex: 5}, cfg.BlockingTimeout(5 * time.Minute)},
		{"blocking 10m", beacon.Query{Service: "web", WaitIndex: 5, WaitTime: beacon.MaxWaitTime}, cfg.BlockingTimeout(beacon.MaxWaitTime)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &deadlineRecorder{}
			c := newFaultClient(t, cfg, consulhttp.WithHTTPClient(&http.Client{Transport: rec}))
			start := time.Now()
			if _, _, err := c.Instances(context.Background(), tc.q); err != nil {
				t.Fatalf("Instances(%+v) = %v, want nil", tc.q, err)
			}
			end := time.Now()
			if len(rec.deadlines) != 1 {
				t.Fatalf("Instances(%+v) sent %d requests, want 1", tc.q, len(rec.deadlines))
			}
			dl := rec.deadlines[0]
			if dl.IsZero() {
				t.Fatalf("Instances(%+v) request has no deadline, want one %v after the call", tc.q, tc.want)
			}
			if dl.Before(start.Add(tc.want)) || dl.After(end.Add(tc.want)) {
				t.Errorf("Instances(%+v) request deadline is %v after the call began, want %v", tc.q, dl.Sub(start), tc.want)
			}
			if tc.q.WaitIndex > 0 && tc.q.WaitTime > 0 && dl.Sub(start) <= tc.q.WaitTime*17/16 {
				t.Errorf("Instances(%+v) request deadline %v is not past the wait plus Consul's jitter %v", tc.q, dl.Sub(start), tc.q.WaitTime*17/16)
			}
		})
	}
}

func TestInstancesQueryShape(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfgDC string
		q     beacon.Query
		want  url.Values
	}{
		{"default is passing only", "", beacon.Query{Service: "web"}, url.Values{"passing": {"1"}}},
		{"include unhealthy", "", beacon.Query{Service: "web", IncludeUnhealthy: true}, url.Values{}},
		{"tags repeated", "", beacon.Query{Service: "web", Tags: []string{"v1", "blue", "a b&c=d"}},
			url.Values{"passing": {"1"}, "tag": {"v1", "blue", "a b&c=d"}}},
		{"blocking with wait", "", beacon.Query{Service: "web", WaitIndex: 42, WaitTime: 2 * time.Second},
			url.Values{"passing": {"1"}, "index": {"42"}, "wait": {"2000ms"}}},
		{"blocking, wait rounded up to a millisecond", "", beacon.Query{Service: "web", WaitIndex: 42, WaitTime: 1500 * time.Microsecond},
			url.Values{"passing": {"1"}, "index": {"42"}, "wait": {"2ms"}}},
		{"blocking, sub-millisecond wait is not 0ms", "", beacon.Query{Service: "web", WaitIndex: 42, WaitTime: time.Nanosecond},
			url.Values{"passing": {"1"}, "index": {"42"}, "wait": {"1ms"}}},
		{"blocking with Consul's default wait", "", beacon.Query{Service: "web", WaitIndex: 18446744073709551615},
			url.Values{"passing": {"1"}, "index": {"18446744073709551615"}}},
		{"wait without index is not blocking", "", beacon.Query{Service: "web", WaitTime: time.Minute}, url.Values{"passing": {"1"}}},
		{"stale", "", beacon.Query{Service: "web", Consistency: beacon.ConsistencyStale}, url.Values{"passing": {"1"}, "stale": {""}}},
		{"consistent", "", beacon.Query{Service: "web", Consistency: beacon.ConsistencyConsistent}, url.Values{"passing": {"1"}, "consistent": {""}}},
		{"filter", "", beacon.Query{Service: "web", Filter: `Service.Meta.version == "2" and "blue" in Service.Tags`},
			url.Values{"passing": {"1"}, "filter": {`Service.Meta.version == "2" and "blue" in Service.Tags`}}},
		{"query datacenter", "", beacon.Query{Service: "web", Datacenter: "dc2"}, url.Values{"passing": {"1"}, "dc": {"dc2"}}},
		{"config datacenter", "dc1", beacon.Query{Service: "web"}, url.Values{"passing": {"1"}, "dc": {"dc1"}}},
		{"query datacenter wins over config", "dc1", beacon.Query{Service: "web", Datacenter: "dc2"}, url.Values{"passing": {"1"}, "dc": {"dc2"}}},
		{"everything", "", beacon.Query{
			Service: "web", Tags: []string{"v1"}, IncludeUnhealthy: true, Datacenter: "dc3",
			Consistency: beacon.ConsistencyStale, Filter: "Service.Port > 0", WaitIndex: 7, WaitTime: 30 * time.Second,
		}, url.Values{"tag": {"v1"}, "dc": {"dc3"}, "stale": {""}, "filter": {"Service.Port > 0"}, "index": {"7"}, "wait": {"30000ms"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAgent(t, nil)
			c := f.client(t, consul.Config{Datacenter: tc.cfgDC})
			if _, _, err := c.Instances(context.Background(), tc.q); err != nil {
				t.Fatalf("Instances(%+v) = %v, want nil", tc.q, err)
			}
			r := f.only(t)
			if r.Method != http.MethodGet || r.Path != "/v1/health/service/web" {
				t.Errorf("Instances(%+v) sent %s %s, want GET /v1/health/service/web", tc.q, r.Method, r.Path)
			}
			got, err := url.ParseQuery(r.RawQuery)
			if err != nil {
				t.Fatalf("Instances(%+v) sent query %q: %v", tc.q, r.RawQuery, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Instances(%+v) query = %v, want %v", tc.q, got, tc.want)
			}
			if got.Has("near") {
				t.Errorf("Instances(%+v) query %q has near, want never", tc.q, r.RawQuery)
			}
		})
	}
}

func TestRegisterBody(t *testing.T) {
	f := newFakeAgent(t, answer(http.StatusOK, nil, ""))
	c := f.client(t, consul.Config{Datacenter: "dc1"})
	r := beacon.Registration{
		ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080,
		Tags: []string{"v1", "blue"}, Meta: map[string]string{"version": "1"},
		Weights: beacon.Weights{Passing: 10, Warning: 1},
		Checks: []beacon.Check{
			{Name: "http", HTTP: "http://10.0.0.5:8080/health", Interval: 10 * time.Second, Timeout: 2 * time.Second,
				DeregisterCriticalAfter: time.Minute, InitialStatus: beacon.HealthPassing},
			{TCP: "10.0.0.5:8080", Interval: 5 * time.Second},
			{ID: "ttl", Name: "ttl", TTL: 15 * time.Second, InitialStatus: beacon.HealthWarning, Notes: "set by the keeper"},
		},
	}
	if err := c.Register(context.Background(), r); err != nil {
		t.Fatalf("Register(%+v) = %v, want nil", r, err)
	}
	const want = `{
		"ID": "web-1", "Name": "web", "Tags": ["v1", "blue"], "Address": "10.0.0.5", "Port": 8080,
		"Meta": {"version": "1"}, "Weights": {"Passing": 10, "Warning": 1},
		"Checks": [
			{"CheckID": "service:web-1:1", "Name": "http", "HTTP": "http://10.0.0.5:8080/health",
			 "Interval": "10s", "Timeout": "2s", "DeregisterCriticalServiceAfter": "1m0s", "Status": "passing"},
			{"CheckID": "service:web-1:2", "Name": "Service 'web' check", "TCP": "10.0.0.5:8080", "Interval": "5s"},
			{"CheckID": "ttl", "Name": "ttl", "TTL": "15s", "Status": "warning", "Notes": "set by the keeper"}
		]
	}`
	got := f.only(t)
	if got.Method != http.MethodPut || got.Path != "/v1/agent/service/register" {
		t.Errorf("Register() sent %s %s, want PUT /v1/agent/service/register", got.Method, got.Path)
	}
	if q, _ := url.ParseQuery(got.RawQuery); !reflect.DeepEqual(q, url.Values{"replace-existing-checks": {"true"}}) {
		t.Errorf("Register() query = %q, want replace-existing-checks=true only", got.RawQuery)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Register() Content-Type = %q, want application/json", ct)
	}
	assertJSON(t, "Register()", got.Body, want)
}

func TestRegisterBodyMinimal(t *testing.T) {
	f := newFakeAgent(t, answer(http.StatusOK, nil, ""))
	c := f.client(t, consul.Config{})
	r := beacon.Registration{ID: "web-1", Service: "web"}
	if err := c.Register(context.Background(), r); err != nil {
		t.Fatalf("Register(%+v) = %v, want nil", r, err)
	}
	// Unset fields are left out, so Consul applies its own defaults.
	assertJSON(t, "Register()", f.only(t).Body, `{"ID": "web-1", "Name": "web"}`)
}

func TestUpdateTTLAndDeregisterShape(t *testing.T) {
	f := newFakeAgent(t, answer(http.StatusOK, nil, ""))
	c := f.client(t, consul.Config{})
	if err := c.UpdateTTL(context.Background(), "service:web-1", beacon.HealthWarning, "slow disk"); err != nil {
		t.Fatalf("UpdateTTL() = %v, want nil", err)
	}
	if err := c.Deregister(context.Background(), "web-1"); err != nil {
		t.Fatalf("Deregister() = %v, want nil", err)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("fake agent saw %d requests, want 2", len(reqs))
	}
	if r := reqs[0]; r.Method != http.MethodPut || r.RequestURI != "/v1/agent/check/update/service:web-1" {
		t.Errorf("UpdateTTL() sent %s %s, want PUT /v1/agent/check/update/service:web-1", r.Method, r.RequestURI)
	}
	assertJSON(t, "UpdateTTL()", reqs[0].Body, `{"Status": "warning", "Output": "slow disk"}`)
	if r := reqs[1]; r.Method != http.MethodPut || r.RequestURI != "/v1/agent/service/deregister/web-1" || len(r.Body) != 0 {
		t.Errorf("Deregister() sent %s %s with body %q, want PUT /v1/agent/service/deregister/web-1 without a body", r.Method, r.RequestURI, r.Body)
	}
}

// assertJSON compares JSON documents by value, so field names, nesting and
// the absence of extra fields all count, but spacing and key order do not.
func assertJSON(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s sent body %q: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad wanted JSON %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s sent body\n%s\nwant\n%s", what, got, want)
	}
}
