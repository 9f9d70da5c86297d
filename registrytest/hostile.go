package registrytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/internal/testutil"
)

// RunHostile runs the hostile-agent tests: the backend against fake agents
// (FakeAgent) that do what a real agent cannot be made to do. They answer with truncated or
// oversized JSON, HTML, garbage headers, arbitrary statuses and redirects;
// they hang before answering or halfway through; and they show the exact
// requests they received, so tokens, escaping and refused input can be
// checked on the wire. Behaviour a real agent can show is Run's business.
//
// The factory is called with a consul.Config whose address is a fake
// agent's (or a closed or silent port) and which may carry Token,
// TokenFile and a short Timeout; a backend must honour all three, and must
// cap answers at 32 MiB unless told otherwise. RunHostile needs no consul
// binary. Like Run, its groups of subtests are parallel: release what the
// factory needs with t.Cleanup, not defer.
//
// What RunHostile holds a backend to, beyond what Run does:
//
//   - An answer that cannot be understood (malformed, truncated or
//     trailing JSON, HTML, a missing or unparsable X-Consul-Index, more than
//     32 MiB) is an error matching beacon.ErrMalformedResponse, and the call
//     returns no instances.
//   - 401 and 403 match beacon.ErrPermissionDenied, 429
//     beacon.ErrRateLimited, 5xx beacon.ErrUnavailable and 404 on UpdateTTL
//     beacon.ErrNotFound, each as a *beacon.StatusError carrying the status,
//     the request's method and path, and Consul's message trimmed and capped
//     at 4 KiB. 404 on Deregister is success. Redirects are not followed.
//   - An agent that refuses connections, never answers, or stalls
//     mid-answer makes every call end within Config.Timeout with an error
//     matching beacon.ErrUnavailable; when the caller's own context ends
//     first, the error matches the context's error and not
//     beacon.ErrUnavailable.
//   - The token travels in the X-Consul-Token header only, never in a URL,
//     a body or an error; TokenFile is read again when it changes, and a
//     token file that has gone fails the call with consul.ErrConfig before
//     anything is sent.
//   - Invalid input sends no request at all.
//   - IDs are percent-escaped in request paths so that the agent decodes
//     them back unchanged.
//   - Lookups ask for passing instances only unless IncludeUnhealthy is
//     set, and never sort by distance (no near parameter).
//   - Register leaves the agent with exactly the checks it lists, by
//     replace-existing-checks or by removing the others.
//   - gRPC, H2PING and alias checks reach the agent in Consul's field
//     names, an H2PING check with H2PingUseTLS spelled out, false included.
func RunHostile(t *testing.T, newRegistry Factory) {
	t.Helper()
	s := suite{newRegistry: newRegistry}
	t.Run("MalformedAnswer", s.testMalformedAnswer)
	t.Run("WellFormedAnswer", s.testWellFormedAnswer)
	t.Run("Status", s.testStatus)
	t.Run("StatusMessageCapped", s.testStatusMessageCapped)
	t.Run("Redirect", s.testRedirect)
	t.Run("Unreachable", s.testUnreachable)
	t.Run("HungAgent", s.testHungAgent)
	t.Run("StalledBody", s.testStalledBody)
	t.Run("CallerDeadline", s.testCallerDeadline)
	t.Run("Token", s.testToken)
	t.Run("TokenFile", s.testTokenFile)
	t.Run("ValidationSendsNothing", s.testValidationSendsNothing)
	t.Run("IDsOnTheWire", s.testIDsOnTheWire)
	t.Run("PassingOnly", s.testPassingOnly)
	t.Run("RegisterReplacesChecks", s.testRegisterReplacesChecks)
	t.Run("CheckKindsOnTheWire", s.testCheckKindsOnTheWire)
	t.Run("PreparedQuery", s.testPreparedQueryHostile)
	t.Run("NodeCoordinates", s.testNodeCoordinatesHostile)
}

// hostileTimeout is Config.Timeout against agents that hang: short, so the
// tests are quick, while the waits on their results stay generous.
const hostileTimeout = 300 * time.Millisecond

// call is one Registry method with fixed arguments, and the request the
// fake misbehaves on: the one every backend sends for it.
type call struct {
	name   string
	method string
	path   string // decoded, as beacon.StatusError.Path reports it
	do     func(context.Context, beacon.Registry) error
}

// webRegistration is what callRegister registers.
var webRegistration = beacon.Registration{
	ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080,
	Checks: []beacon.Check{{TTL: 15 * time.Second}},
}

var (
	callRegister = call{"Register", http.MethodPut, "/v1/agent/service/register",
		func(ctx context.Context, r beacon.Registry) error { return r.Register(ctx, webRegistration) }}
	callDeregister = call{"Deregister", http.MethodPut, "/v1/agent/service/deregister/web-1",
		func(ctx context.Context, r beacon.Registry) error { return r.Deregister(ctx, "web-1") }}
	callUpdateTTL = call{"UpdateTTL", http.MethodPut, "/v1/agent/check/update/service:web-1",
		func(ctx context.Context, r beacon.Registry) error {
			return r.UpdateTTL(ctx, "service:web-1", beacon.HealthPassing, "ok")
		}}
	callInstances = call{"Instances", http.MethodGet, "/v1/health/service/web",
		func(ctx context.Context, r beacon.Registry) error {
			_, _, err := r.Instances(ctx, beacon.Query{Service: "web"})
			return err
		}}
	allCalls = []call{callRegister, callDeregister, callUpdateTTL, callInstances}
)

// within runs f on a goroutine of its own and returns its error, failing
// the test if f has not returned within waitLimit.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		t.Fatalf("%s has not returned after %v", what, waitLimit)
		return nil
	}
}

// noToken fails the test if err's text holds fakeToken.
func noToken(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), fakeToken) {
		t.Errorf("%s error %q contains the token", what, err)
	}
}

// testMalformedAnswer feeds lookups answers that cannot be understood.
func (s suite) testMalformedAnswer(t *testing.T) {
	t.Parallel()
	meta := MetaHeader("5")
	for _, tc := range []struct {
		name   string
		answer http.HandlerFunc
	}{
		{"TruncatedJSON", Answer(http.StatusOK, meta, WebAnswer[:len(WebAnswer)/2])},
		{"TruncatedAfterArrayOpens", Answer(http.StatusOK, meta, "[")},
		{"EmptyBody", Answer(http.StatusOK, meta, "")},
		{"HTMLWithStatus200", Answer(http.StatusOK, with(meta, "Content-Type", "text/html"), "<html><body><h1>502 Bad Gateway</h1></body></html>")},
		{"ObjectInsteadOfArray", Answer(http.StatusOK, meta, `{"error":"nope"}`)},
		{"NoIndex", Answer(http.StatusOK, without(meta, "X-Consul-Index"), WebAnswer)},
		{"IndexNotANumber", Answer(http.StatusOK, MetaHeader("abc"), WebAnswer)},
		{"IndexNegative", Answer(http.StatusOK, MetaHeader("-1"), WebAnswer)},
		{"Index2To64", Answer(http.StatusOK, MetaHeader("18446744073709551616"), WebAnswer)},
		{"IndexHuge", Answer(http.StatusOK, MetaHeader(strings.Repeat("9", 400)), WebAnswer)},
		{"IndexFloat", Answer(http.StatusOK, MetaHeader("1.5"), WebAnswer)},
		{"LastContactNotANumber", Answer(http.StatusOK, with(meta, "X-Consul-LastContact", "soon"), WebAnswer)},
		{"LastContactNegative", Answer(http.StatusOK, with(meta, "X-Consul-LastContact", "-3"), WebAnswer)},
		{"LastContactHuge", Answer(http.StatusOK, with(meta, "X-Consul-LastContact", "99999999999999999999"), WebAnswer)},
		{"NullEntry", Answer(http.StatusOK, meta, "[null]")},
		{"EntryWithoutNode", Answer(http.StatusOK, meta, `[{"Service":{"ID":"web-1","Service":"web"},"Checks":[]}]`)},
		{"EntryWithoutService", Answer(http.StatusOK, meta, `[{"Node":{"Node":"node-1"},"Checks":[]}]`)},
		{"EntryWithNullService", Answer(http.StatusOK, meta, `[{"Node":{"Node":"node-1"},"Service":null}]`)},
		{"ServiceWithoutID", Answer(http.StatusOK, meta, `[{"Node":{"Node":"node-1"},"Service":{"Service":"web"}}]`)},
		{"PortOfWrongType", Answer(http.StatusOK, meta, `[{"Node":{"Node":"n"},"Service":{"ID":"web-1","Port":"80"}}]`)},
		{"SecondArrayAfterFirst", Answer(http.StatusOK, meta, "[] []")},
		{"GarbageAfterArray", Answer(http.StatusOK, meta, WebAnswer+"garbage")},
		{"ObjectAfterArray", Answer(http.StatusOK, meta, WebAnswer+"{}")},
		{"ClosingBracketAfterArray", Answer(http.StatusOK, meta, "[]]")},
		{"EntriesLargerThanCap", streamed(http.StatusOK, meta, entries(bodyCap+1))},
		{"OneByteOverCap", streamed(http.StatusOK, meta, padded("[]", bodyCap+1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, forCall(callInstances, tc.answer))
			// The request timeout is generous: reading 32 MiB under the race
			// detector on a loaded machine takes seconds.
			r := s.fakeRegistry(t, f, consul.Config{Token: fakeToken, Timeout: waitLimit})
			q := beacon.Query{Service: "web"}
			insts, meta, err := r.Instances(testContext(t), q)
			if !errors.Is(err, beacon.ErrMalformedResponse) {
				t.Fatalf("Instances(%s) = %v, want an error matching beacon.ErrMalformedResponse", describe(q), err)
			}
			if insts != nil || meta != (beacon.QueryMeta{}) {
				t.Errorf("Instances(%s) = %+v, %+v with error %v, want nothing", describe(q), insts, meta, err)
			}
			noToken(t, "Instances("+describe(q)+")", err)
		})
	}
}

// testWellFormedAnswer is the control for testMalformedAnswer: the same
// fakes with good answers succeed, so each malformed case fails for the
// reason it names.
func (s suite) testWellFormedAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer http.HandlerFunc
		want   []beacon.Instance
		meta   beacon.QueryMeta
	}{
		{
			name:   "OneEntry",
			answer: Answer(http.StatusOK, with(MetaHeader("42"), "X-Consul-LastContact", "15"), WebAnswer),
			want: []beacon.Instance{{
				ID: "web-1", Service: "web", Node: "node-1", Address: "10.0.0.5", Port: 8080,
				Tags: []string{"v1"}, Meta: map[string]string{"version": "1"},
				Weights: beacon.Weights{Passing: 10, Warning: 1}, Health: beacon.HealthPassing,
			}},
			meta: beacon.QueryMeta{LastIndex: 42, KnownLeader: true, LastContact: 15 * time.Millisecond},
		},
		{
			name: "NodeAddressWhenServiceHasNone",
			answer: Answer(http.StatusOK, MetaHeader("7"),
				`[{"Node":{"Node":"node-1","Address":"10.0.0.1"},"Service":{"ID":"web-1","Service":"web","Port":80},"Checks":[{"Status":"passing"},{"Status":"maintenance"}]}]`),
			want: []beacon.Instance{{
				ID: "web-1", Service: "web", Node: "node-1", Address: "10.0.0.1", Port: 80,
				Health: beacon.HealthCritical,
			}},
			meta: beacon.QueryMeta{LastIndex: 7, KnownLeader: true},
		},
		{"NoLeader", Answer(http.StatusOK, with(MetaHeader("3"), "X-Consul-KnownLeader", "false"), "[]"), []beacon.Instance{}, beacon.QueryMeta{LastIndex: 3}},
		{"Empty", Answer(http.StatusOK, MetaHeader("3"), "[]"), []beacon.Instance{}, beacon.QueryMeta{LastIndex: 3, KnownLeader: true}},
		{"ExactlyAtCap", streamed(http.StatusOK, MetaHeader("3"), padded("[]", bodyCap)), []beacon.Instance{}, beacon.QueryMeta{LastIndex: 3, KnownLeader: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, forCall(callInstances, tc.answer))
			r := s.fakeRegistry(t, f, consul.Config{Timeout: waitLimit})
			q := beacon.Query{Service: "web"}
			insts, meta, err := r.Instances(testContext(t), q)
			if err != nil {
				t.Fatalf("Instances(%s) = %v, want nil error", describe(q), err)
			}
			if !reflect.DeepEqual(insts, tc.want) {
				t.Errorf("Instances(%s) = %+v, want %+v", describe(q), insts, tc.want)
			}
			if meta != tc.meta {
				t.Errorf("Instances(%s) meta = %+v, want %+v", describe(q), meta, tc.meta)
			}
		})
	}
}

// allSentinels are the sentinels a status can map onto; a status error
// matches its own and no other.
var allSentinels = []error{beacon.ErrNotFound, beacon.ErrPermissionDenied, beacon.ErrRateLimited, beacon.ErrUnavailable, beacon.ErrMalformedResponse, beacon.ErrInvalid}

// testStatus answers each call's request with error statuses.
func (s suite) testStatus(t *testing.T) {
	t.Parallel()
	type statusCase struct {
		name    string
		call    call
		status  int
		message string
		want    error // nil: the call succeeds
	}
	var cases []statusCase
	for _, st := range []struct {
		status  int
		message string
		want    error
	}{
		{http.StatusUnauthorized, "Unauthorized", beacon.ErrPermissionDenied},
		{http.StatusForbidden, `Permission denied: token with AccessorID '5b1f0e6a-2a6f-4a1b-9f61-0c9ad3c0e0a1' lacks permission 'service:write' on "web"`, beacon.ErrPermissionDenied},
		{http.StatusTooManyRequests, "Your IP is issuing too many concurrent connections, please rate limit your calls", beacon.ErrRateLimited},
		{http.StatusInternalServerError, "rpc error making call: No cluster leader", beacon.ErrUnavailable},
		{http.StatusServiceUnavailable, "Service Unavailable", beacon.ErrUnavailable},
	} {
		for _, c := range allCalls {
			cases = append(cases, statusCase{fmt.Sprintf("%d/%s", st.status, c.name), c, st.status, st.message, st.want})
		}
	}
	cases = append(cases,
		statusCase{"404/UpdateTTL", callUpdateTTL, http.StatusNotFound,
			`Unknown check ID "service:web-1". Ensure that the check ID is passed, not the check name.`, beacon.ErrNotFound},
		statusCase{"404/Deregister", callDeregister, http.StatusNotFound,
			`Unknown service ID "web-1". Ensure that the service ID is passed, not the service name.`, nil},
		statusCase{"503WithoutMessage/UpdateTTL", callUpdateTTL, http.StatusServiceUnavailable, "", beacon.ErrUnavailable},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, forCall(tc.call, Answer(tc.status, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, tc.message+"\n")))
			r := s.fakeRegistry(t, f, consul.Config{Token: fakeToken})
			err := tc.call.do(testContext(t), r)
			what := fmt.Sprintf("%s() after %d", tc.call.name, tc.status)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("%s = %v, want nil", what, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s = %v, want an error matching %v", what, err, tc.want)
			}
			for _, other := range allSentinels {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("%s = %v, matches %v too", what, err, other)
				}
			}
			var se *beacon.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("%s = %v (%T), want a *beacon.StatusError in the chain", what, err, err)
			}
			if se.StatusCode != tc.status {
				t.Errorf("%s: StatusError.StatusCode = %d, want %d", what, se.StatusCode, tc.status)
			}
			if se.Message != tc.message {
				t.Errorf("%s: StatusError.Message = %q, want %q", what, se.Message, tc.message)
			}
			if se.Method != tc.call.method || se.Path != tc.call.path {
				t.Errorf("%s: StatusError.Method, Path = %q, %q, want %q, %q", what, se.Method, se.Path, tc.call.method, tc.call.path)
			}
			if tc.message != "" && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("%s: error %q does not carry Consul's message %q", what, err, tc.message)
			}
			noToken(t, what, err)
		})
	}
}

// testStatusMessageCapped: an error answer's body is kept as the message,
// but not all of it.
func (s suite) testStatusMessageCapped(t *testing.T) {
	t.Parallel()
	const maxMessage = 4 << 10
	long := strings.Repeat("x", 64<<10)
	for _, c := range allCalls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, forCall(c, Answer(http.StatusInternalServerError, nil, long)))
			r := s.fakeRegistry(t, f, consul.Config{})
			err := c.do(testContext(t), r)
			var se *beacon.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("%s() after a 500 = %v, want a *beacon.StatusError", c.name, err)
			}
			if len(se.Message) == 0 || len(se.Message) > maxMessage || !strings.HasPrefix(long, se.Message) {
				t.Errorf("%s() StatusError.Message is %d bytes, want the first 1 to %d of Consul's message", c.name, len(se.Message), maxMessage)
			}
		})
	}
}

// testRedirect: net/http forwards custom headers such as X-Consul-Token on
// redirects, even to another host. The agent API never redirects, so a
// backend must not follow one.
func (s suite) testRedirect(t *testing.T) {
	t.Parallel()
	for _, c := range allCalls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			elsewhere := NewFakeAgent(t, nil)
			f := NewFakeAgent(t, forCall(c, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, elsewhere.URL()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			}))
			r := s.fakeRegistry(t, f, consul.Config{Token: fakeToken})
			err := c.do(testContext(t), r)
			var se *beacon.StatusError
			if !errors.As(err, &se) || se.StatusCode != http.StatusTemporaryRedirect {
				t.Errorf("%s() answered with a redirect = %v, want a *beacon.StatusError with status %d", c.name, err, http.StatusTemporaryRedirect)
			}
			if got := elsewhere.Requests(); len(got) != 0 {
				t.Errorf("%s() followed the redirect: its target saw %q, want nothing", c.name, got)
			}
			noToken(t, c.name+"()", err)
		})
	}
}

// testUnreachable: a port that refuses connections.
func (s suite) testUnreachable(t *testing.T) {
	t.Parallel()
	r := s.registry(t, consul.Config{Addresses: []string{testutil.ClosedAddr(t)}, Token: fakeToken})
	for _, c := range allCalls {
		t.Run(c.name, func(t *testing.T) {
			err := within(t, c.name+"() against a closed port", func() error { return c.do(testContext(t), r) })
			if !errors.Is(err, beacon.ErrUnavailable) {
				t.Errorf("%s() against a closed port = %v, want an error matching beacon.ErrUnavailable", c.name, err)
			}
			noToken(t, c.name+"()", err)
		})
	}
}

// testHungAgent: an agent that accepts connections and never answers, as a
// paused agent does. Config.Timeout bounds every call.
func (s suite) testHungAgent(t *testing.T) {
	t.Parallel()
	for _, c := range allCalls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			addr := hungAgent(t, "")
			r := s.registry(t, consul.Config{Addresses: []string{addr}, Token: fakeToken, Timeout: hostileTimeout})
			err := within(t, c.name+"() against a hung agent", func() error { return c.do(context.Background(), r) })
			if !errors.Is(err, beacon.ErrUnavailable) {
				t.Errorf("%s() against a hung agent = %v, want an error matching beacon.ErrUnavailable", c.name, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s() against a hung agent = %v, want an error matching context.DeadlineExceeded", c.name, err)
			}
			noToken(t, c.name+"()", err)
		})
	}
}

// testStalledBody: an agent that sends its headers and part of a body,
// then falls silent. Config.Timeout bounds the whole call, body included;
// a lookup reports the agent unavailable, not its answer malformed.
func (s suite) testStalledBody(t *testing.T) {
	t.Parallel()
	const greeting = "HTTP/1.1 200 OK\r\nX-Consul-Index: 5\r\nX-Consul-KnownLeader: true\r\nX-Consul-LastContact: 0\r\n" +
		"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
	for _, c := range allCalls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			addr := hungAgent(t, greeting)
			r := s.registry(t, consul.Config{Addresses: []string{addr}, Token: fakeToken, Timeout: hostileTimeout})
			err := within(t, c.name+"() against an agent stalled mid-answer", func() error { return c.do(context.Background(), r) })
			noToken(t, c.name+"()", err)
			if c.name != callInstances.name {
				return // the answer was 200: whether the call failed is the backend's choice
			}
			if !errors.Is(err, beacon.ErrUnavailable) || errors.Is(err, beacon.ErrMalformedResponse) {
				t.Errorf("%s() against an agent stalled mid-answer = %v, want an error matching beacon.ErrUnavailable and not beacon.ErrMalformedResponse", c.name, err)
			}
		})
	}
}

// testCallerDeadline: when the caller's own context ends first, the error
// says so and does not blame the agent. Register and Deregister are left
// out: a backend built on go-kit cannot hand them a context, and bounds
// them by Config.Timeout alone.
func (s suite) testCallerDeadline(t *testing.T) {
	t.Parallel()
	for _, c := range []call{callUpdateTTL, callInstances} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			addr := hungAgent(t, "")
			r := s.registry(t, consul.Config{Addresses: []string{addr}}) // the default request timeout, 10 s
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err := within(t, c.name+"() with a short caller deadline", func() error { return c.do(ctx, r) })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s() with a short caller deadline = %v, want an error matching context.DeadlineExceeded", c.name, err)
			}
			if errors.Is(err, beacon.ErrUnavailable) {
				t.Errorf("%s() with a short caller deadline = %v, want no match for beacon.ErrUnavailable", c.name, err)
			}
		})
	}
}

// testToken checks every request a call sends: the token in the
// X-Consul-Token header, exactly once, and nowhere else; without a token,
// no header.
func (s suite) testToken(t *testing.T) {
	t.Parallel()
	for _, c := range allCalls {
		t.Run("OnlyInHeader/"+c.name, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, nil)
			r := s.fakeRegistry(t, f, consul.Config{Token: fakeToken})
			if err := c.do(testContext(t), r); err != nil {
				t.Fatalf("%s() = %v, want nil", c.name, err)
			}
			reqs := f.Requests()
			if len(reqs) == 0 {
				t.Fatalf("%s() sent no request", c.name)
			}
			for _, req := range reqs {
				if got := req.Header.Values("X-Consul-Token"); len(got) != 1 || got[0] != fakeToken {
					t.Errorf("%s() sent %s with X-Consul-Token %q, want exactly [%q]", c.name, req, got, fakeToken)
				}
				if strings.Contains(req.RequestURI, fakeToken) {
					t.Errorf("%s() sent %s: the URL contains the token", c.name, req)
				}
				if q, _ := url.ParseQuery(req.RawQuery); q.Has("token") {
					t.Errorf("%s() sent %s with a token parameter", c.name, req)
				}
				if strings.Contains(string(req.Body), fakeToken) {
					t.Errorf("%s() sent %s with body %q: it contains the token", c.name, req, req.Body)
				}
				if got := req.Header.Get("Authorization"); got != "" {
					t.Errorf("%s() sent %s with Authorization %q, want none", c.name, req, got)
				}
			}
		})
		t.Run("None/"+c.name, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, nil)
			r := s.fakeRegistry(t, f, consul.Config{})
			if err := c.do(testContext(t), r); err != nil {
				t.Fatalf("%s() = %v, want nil", c.name, err)
			}
			for _, req := range f.Requests() {
				if got := req.Header.Values("X-Consul-Token"); got != nil {
					t.Errorf("%s() without a token sent %s with X-Consul-Token %q, want none", c.name, req, got)
				}
			}
		})
	}
}

// testTokenFile: a rotated token file is honoured on the next call, and a
// token file that has gone stops calls before anything is sent.
func (s suite) testTokenFile(t *testing.T) {
	t.Parallel()
	// The tokens differ in length, so the rewrite is noticed even where the
	// file system's modification times are coarse.
	const first, second = "first-token", "second-token-after-rotation"
	for _, c := range allCalls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(path, []byte(first+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f := NewFakeAgent(t, nil)
			r := s.fakeRegistry(t, f, consul.Config{Token: "static-token-loses", TokenFile: path})
			ctx := testContext(t)
			if err := c.do(ctx, r); err != nil {
				t.Fatalf("%s() = %v, want nil", c.name, err)
			}
			before := len(f.Requests())
			if err := os.WriteFile(path, []byte(second+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := c.do(ctx, r); err != nil {
				t.Fatalf("%s() after rotation = %v, want nil", c.name, err)
			}
			reqs := f.Requests()
			if before == 0 || len(reqs) == before {
				t.Fatalf("%s() sent %d requests before rotation and %d after, want some each time", c.name, before, len(reqs)-before)
			}
			for i, req := range reqs {
				want := first
				if i >= before {
					want = second
				}
				if got := req.Header.Get("X-Consul-Token"); got != want {
					t.Errorf("%s() sent %s with X-Consul-Token %q, want %q", c.name, req, got, want)
				}
			}

			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			err := c.do(ctx, r)
			if !errors.Is(err, consul.ErrConfig) {
				t.Errorf("%s() with the token file removed = %v, want an error matching consul.ErrConfig", c.name, err)
			}
			if got := f.Requests()[len(reqs):]; len(got) != 0 {
				t.Errorf("%s() with the token file removed sent %q, want nothing", c.name, got)
			}
		})
	}
}

// testValidationSendsNothing: invalid input is refused with a
// *beacon.ValidationError before a single request is sent.
func (s suite) testValidationSendsNothing(t *testing.T) {
	t.Parallel()
	valid := func() beacon.Registration {
		return beacon.Registration{
			ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080,
			Checks: []beacon.Check{{HTTP: "http://10.0.0.5:8080/health", Interval: 10 * time.Second}},
		}
	}
	// Each case is one call, described as it is made.
	type invalidCall struct {
		what string
		do   func(context.Context, beacon.Registry) error
	}
	register := func(edit func(*beacon.Registration)) invalidCall {
		reg := valid()
		edit(&reg)
		return invalidCall{fmt.Sprintf("Register(%q)", reg.ID), func(ctx context.Context, r beacon.Registry) error {
			return r.Register(ctx, reg)
		}}
	}
	instances := func(q beacon.Query) invalidCall {
		return invalidCall{"Instances(" + describe(q) + ")", func(ctx context.Context, r beacon.Registry) error {
			_, _, err := r.Instances(ctx, q)
			return err
		}}
	}
	updateTTL := func(checkID string, status beacon.Health) invalidCall {
		return invalidCall{fmt.Sprintf("UpdateTTL(%q, %q)", checkID, status), func(ctx context.Context, r beacon.Registry) error {
			return r.UpdateTTL(ctx, checkID, status, "")
		}}
	}
	deregister := func(id string) invalidCall {
		return invalidCall{fmt.Sprintf("Deregister(%q)", id), func(ctx context.Context, r beacon.Registry) error {
			return r.Deregister(ctx, id)
		}}
	}
	manyMeta := make(map[string]string, beacon.MaxMetaPairs+1)
	for i := range beacon.MaxMetaPairs + 1 {
		manyMeta["k"+strconv.Itoa(i)] = "v"
	}
	longKey := strings.Repeat("k", beacon.MaxMetaKeyLen+1)
	metaField := func(k string) string { return "Meta[" + strconv.Quote(k) + "]" }

	for _, tc := range []struct {
		name  string
		call  invalidCall
		field string
	}{
		{"MetaOver64Pairs", register(func(r *beacon.Registration) { r.Meta = manyMeta }), "Meta"},
		{"MetaKeyOver128Characters", register(func(r *beacon.Registration) { r.Meta = map[string]string{longKey: "v"} }), metaField(longKey)},
		{"MetaKeyWithDot", register(func(r *beacon.Registration) { r.Meta = map[string]string{"a.b": "v"} }), metaField("a.b")},
		{"MetaKeyWithSpace", register(func(r *beacon.Registration) { r.Meta = map[string]string{"a b": "v"} }), metaField("a b")},
		{"MetaKeyWithConsulPrefix", register(func(r *beacon.Registration) { r.Meta = map[string]string{"consul-version": "v"} }), metaField("consul-version")},
		{"MetaValueOver512Characters", register(func(r *beacon.Registration) {
			r.Meta = map[string]string{"k": strings.Repeat("v", beacon.MaxMetaValueLen+1)}
		}), metaField("k")},
		{"ServiceNameWithControlCharacter", register(func(r *beacon.Registration) { r.Service = "web\x7fapi" }), "Service"},
		{"ServiceNameNotUTF8", register(func(r *beacon.Registration) { r.Service = "web\xffapi" }), "Service"},
		{"EmptyServiceName", register(func(r *beacon.Registration) { r.Service = "" }), "Service"},
		{"ServiceNameOverMaxLength", register(func(r *beacon.Registration) { r.Service = strings.Repeat("w", beacon.MaxServiceNameLen+1) }), "Service"},
		{"DeregisterCriticalAfter30s", register(func(r *beacon.Registration) { r.Checks[0].DeregisterCriticalAfter = 30 * time.Second }), "Checks[0].DeregisterCriticalAfter"},
		{"WeightsPassing0", register(func(r *beacon.Registration) { r.Weights = beacon.Weights{Passing: 0, Warning: 1} }), "Weights.Passing"},
		{"WeightsWarningNegative", register(func(r *beacon.Registration) { r.Weights = beacon.Weights{Passing: 1, Warning: -1} }), "Weights.Warning"},
		{"IntervalUnderSecond", register(func(r *beacon.Registration) { r.Checks[0].Interval = 500 * time.Millisecond }), "Checks[0].Interval"},
		{"EmptyRegistrationID", register(func(r *beacon.Registration) { r.ID = "" }), "ID"},
		// The check kinds the agent runs itself, each wrong in its own way.
		{"CheckOfTwoKinds", register(func(r *beacon.Registration) { r.Checks[0].GRPC = "10.0.0.5:9090" }), "Checks[0]"},
		{"GRPCWithoutPort", register(oneCheck(beacon.Check{GRPC: "10.0.0.5/svc", Interval: time.Second})), "Checks[0].GRPC"},
		{"GRPCEmptyService", register(oneCheck(beacon.Check{GRPC: "10.0.0.5:9090/", Interval: time.Second})), "Checks[0].GRPC"},
		{"GRPCServiceNotUTF8", register(oneCheck(beacon.Check{GRPC: "10.0.0.5:9090/\xff", Interval: time.Second})), "Checks[0].GRPC"},
		{"GRPCWithoutInterval", register(oneCheck(beacon.Check{GRPC: "10.0.0.5:9090"})), "Checks[0].Interval"},
		{"GRPCUseTLSWithoutGRPC", register(func(r *beacon.Registration) { r.Checks[0].GRPCUseTLS = true }), "Checks[0].GRPCUseTLS"},
		{"H2PINGPort0", register(oneCheck(beacon.Check{H2PING: "10.0.0.5:0", Interval: time.Second})), "Checks[0].H2PING"},
		{"H2PINGControlCharacter", register(oneCheck(beacon.Check{H2PING: "10.0.0.5\n:443", Interval: time.Second})), "Checks[0].H2PING"},
		{"H2PINGIntervalUnderSecond", register(oneCheck(beacon.Check{H2PING: "10.0.0.5:443", Interval: time.Millisecond})), "Checks[0].Interval"},
		{"TLSSkipVerifyOnCleartextH2PING", register(oneCheck(beacon.Check{H2PING: "10.0.0.5:443", TLSSkipVerify: true, Interval: time.Second})), "Checks[0].TLSSkipVerify"},
		{"TLSServerNameOnPlainHTTP", register(func(r *beacon.Registration) { r.Checks[0].TLSServerName = "web.internal" }), "Checks[0].TLSServerName"},
		{"AliasWithTTL", register(oneCheck(beacon.Check{AliasService: "db-1", TTL: time.Minute})), "Checks[0]"},
		{"AliasWithTimeout", register(oneCheck(beacon.Check{AliasNode: "node-2", Timeout: time.Second})), "Checks[0].Interval"},
		{"AliasOfItself", register(oneCheck(beacon.Check{AliasService: "web-1"})), "Checks[0].AliasService"},
		{"AliasServiceDotDot", register(oneCheck(beacon.Check{AliasService: ".."})), "Checks[0].AliasService"},
		{"AliasNodeNotUTF8", register(oneCheck(beacon.Check{AliasNode: "node\xc3"})), "Checks[0].AliasNode"},
		{"RegistrationIDDotDot", register(func(r *beacon.Registration) { r.ID = ".." }), "ID"},
		{"WaitTimeOver10m", instances(beacon.Query{Service: "web", WaitIndex: 5, WaitTime: beacon.MaxWaitTime + time.Second}), "WaitTime"},
		{"QueryServiceNameWithPath", instances(beacon.Query{Service: "web/../../v1/acl"}), "Service"},
		{"TTLStatusUnknown", updateTTL("service:web-1", beacon.Health("ok")), "Status"},
		{"EmptyCheckID", updateTTL("", beacon.HealthPassing), "CheckID"},
		{"EmptyDeregisterID", deregister(""), "ID"},
		{"DeregisterIDDot", deregister("."), "ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, nil)
			r := s.fakeRegistry(t, f, consul.Config{})
			wantInvalid(t, tc.call.what, tc.call.do(testContext(t), r), tc.field)
			if got := f.Requests(); len(got) != 0 {
				t.Errorf("%s sent %q, want nothing", tc.call.what, got)
			}
		})
	}
}

// reservedIDs hold characters that delimit URLs, or need escaping in them.
var reservedIDs = []string{"a/b", "x#y", "p?q", "100%", "sp ace", "ünï"}

// testIDsOnTheWire: IDs with reserved characters reach the agent escaped
// so that it decodes them back unchanged, for every method.
func (s suite) testIDsOnTheWire(t *testing.T) {
	t.Parallel()
	// onePath checks that f saw exactly one method request below prefix and
	// that its path decodes to prefix+id.
	onePath := func(t *testing.T, what string, f *FakeAgent, method, prefix, id string) {
		t.Helper()
		got := f.RequestsTo(method, prefix)
		if len(got) != 1 || got[0].Path != prefix+id {
			t.Errorf("%s sent %q below %s, want one %s with the path decoding to %q", what, got, prefix, method, prefix+id)
		}
	}
	for _, id := range reservedIDs {
		t.Run("Deregister/"+id, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, nil)
			r := s.fakeRegistry(t, f, consul.Config{})
			what := fmt.Sprintf("Deregister(%q)", id)
			if err := r.Deregister(testContext(t), id); err != nil {
				t.Fatalf("%s = %v, want nil", what, err)
			}
			onePath(t, what, f, http.MethodPut, "/v1/agent/service/deregister/", id)
		})
		t.Run("UpdateTTL/"+id, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, nil)
			r := s.fakeRegistry(t, f, consul.Config{})
			what := fmt.Sprintf("UpdateTTL(%q)", id)
			if err := r.UpdateTTL(testContext(t), id, beacon.HealthPassing, ""); err != nil {
				t.Fatalf("%s = %v, want nil", what, err)
			}
			onePath(t, what, f, http.MethodPut, "/v1/agent/check/update/", id)
		})
		t.Run("Register/"+id, func(t *testing.T) {
			t.Parallel()
			// The agent still holds a check of an earlier registration, so
			// a backend that removes stale checks itself sends its ID in a
			// path too.
			reg := beacon.Registration{ID: id, Service: "web", Checks: []beacon.Check{{TTL: time.Minute}}}
			stale := "old:" + id
			f := NewFakeAgent(t, agentWithChecks(id, append(reg.CheckIDs(), stale)...))
			r := s.fakeRegistry(t, f, consul.Config{})
			what := fmt.Sprintf("Register(%q)", id)
			if err := r.Register(testContext(t), reg); err != nil {
				t.Fatalf("%s = %v, want nil", what, err)
			}
			if sent := registerBody(t, f); sent.ID != id {
				t.Errorf("%s sent ID %q in the body, want %q", what, sent.ID, id)
			}
			for _, req := range f.RequestsTo(http.MethodPut, "/v1/agent/check/deregister/") {
				if want := "/v1/agent/check/deregister/" + stale; req.Path != want {
					t.Errorf("%s sent %s, whose path decodes to %q, want %q", what, req, req.Path, want)
				}
			}
		})
		t.Run("Instances/"+id, func(t *testing.T) {
			t.Parallel()
			entry, err := json.Marshal(map[string]any{
				"Node":    map[string]any{"Node": "node-1", "Address": "10.0.0.1"},
				"Service": map[string]any{"ID": id, "Service": "web", "Port": 80},
			})
			if err != nil {
				t.Fatal(err)
			}
			f := NewFakeAgent(t, forCall(callInstances, Answer(http.StatusOK, MetaHeader("3"), "["+string(entry)+"]")))
			r := s.fakeRegistry(t, f, consul.Config{})
			q := beacon.Query{Service: "web"}
			if got, _ := lookup(t, testContext(t), r, q); !slices.Equal(ids(got), []string{id}) {
				t.Errorf("Instances(%s) = IDs %q, want [%q]", describe(q), ids(got), id)
			}
		})
	}
}

// testPassingOnly checks what every lookup asks for: passing instances
// unless IncludeUnhealthy is set, and never a sort by distance.
func (s suite) testPassingOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		q    beacon.Query
	}{
		{"Default", beacon.Query{Service: "web"}},
		{"OneTag", beacon.Query{Service: "web", Tags: []string{"v1"}}},
		{"TwoTags", beacon.Query{Service: "web", Tags: []string{"v1", "blue"}}},
		{"StaleElsewhereFiltered", beacon.Query{Service: "web", Consistency: beacon.ConsistencyStale, Datacenter: "dc2", Filter: "Service.Port > 0"}},
		{"Blocking", beacon.Query{Service: "web", WaitIndex: 7, WaitTime: time.Second}},
		{"IncludeUnhealthy", beacon.Query{Service: "web", IncludeUnhealthy: true}},
		{"IncludeUnhealthyOneTag", beacon.Query{Service: "web", IncludeUnhealthy: true, Tags: []string{"v1"}}},
		{"IncludeUnhealthyTwoTags", beacon.Query{Service: "web", IncludeUnhealthy: true, Tags: []string{"v1", "blue"}}},
		{"IncludeUnhealthyBlocking", beacon.Query{Service: "web", IncludeUnhealthy: true, WaitIndex: 7, WaitTime: time.Second}},
	} {
		q := tc.q
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := NewFakeAgent(t, nil)
			r := s.fakeRegistry(t, f, consul.Config{})
			lookup(t, testContext(t), r, q)
			reqs := f.RequestsTo(http.MethodGet, "/v1/health/service/web")
			if len(reqs) != 1 {
				t.Fatalf("Instances(%s) sent %q, want one GET /v1/health/service/web", describe(q), f.Requests())
			}
			got, err := url.ParseQuery(reqs[0].RawQuery)
			if err != nil {
				t.Fatalf("Instances(%s) sent query %q: %v", describe(q), reqs[0].RawQuery, err)
			}
			if passing := got.Has("passing") && isTrue(got.Get("passing")); passing != !q.IncludeUnhealthy {
				t.Errorf("Instances(%s) sent query %q: asks for passing instances only = %v, want %v", describe(q), reqs[0].RawQuery, passing, !q.IncludeUnhealthy)
			}
			if got.Has("near") {
				t.Errorf("Instances(%s) sent query %q with near, want never", describe(q), reqs[0].RawQuery)
			}
		})
	}
}

// isTrue reads a boolean query parameter as Consul does: present and empty
// is true.
func isTrue(v string) bool {
	b, err := strconv.ParseBool(v)
	return v == "" || (err == nil && b)
}

// testRegisterReplacesChecks: the agent still holds checks of an earlier
// registration, which Register must replace. Backends may differ in how:
// replace-existing-checks on the register request, or removing each check
// the agent lists that the registration does not.
func (s suite) testRegisterReplacesChecks(t *testing.T) {
	t.Parallel()
	reg := beacon.Registration{
		ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080,
		Checks: []beacon.Check{
			{TTL: 15 * time.Second},
			{HTTP: "http://10.0.0.5:8080/health", Interval: 10 * time.Second},
		},
	}
	current := reg.CheckIDs()
	stale := []string{"service:web-1:3", "legacy disk"}
	for _, tc := range []struct {
		name string
		// staleGone: the stale checks vanish before the backend removes
		// them, so the agent answers 404 to their removal.
		staleGone bool
	}{
		{"StaleChecksListed", false},
		{"StaleChecksAlreadyGone", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			listed := agentWithChecks(reg.ID, append(slices.Clone(current), stale...)...)
			f := NewFakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.staleGone && r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/agent/check/deregister/") {
					Answer(http.StatusNotFound, nil, "Unknown check ID\n")(w, r)
					return
				}
				listed(w, r)
			})
			r := s.fakeRegistry(t, f, consul.Config{})
			what := fmt.Sprintf("Register(%q)", reg.ID)
			if err := r.Register(testContext(t), reg); err != nil {
				t.Fatalf("%s = %v, want nil", what, err)
			}

			sent := registerBody(t, f)
			if sent.ID != reg.ID || sent.Name != reg.Service || !slices.Equal(sent.checkIDs(), current) {
				t.Errorf("%s sent ID %q, Name %q, check IDs %q; want %q, %q, %q", what, sent.ID, sent.Name, sent.checkIDs(), reg.ID, reg.Service, current)
			}

			reqs := f.Requests()
			registered := slices.IndexFunc(reqs, func(r Request) bool {
				return r.Method == http.MethodPut && r.Path == "/v1/agent/service/register"
			})
			q, _ := url.ParseQuery(reqs[registered].RawQuery)
			replaced := q.Has("replace-existing-checks") && isTrue(q.Get("replace-existing-checks"))
			var removed []string
			for i, req := range reqs {
				if req.Method == http.MethodGet && req.Path == "/v1/agent/checks" && i < registered {
					t.Errorf("%s listed the agent's checks before registering: a check the agent adds in between survives", what)
				}
				if id, ok := strings.CutPrefix(req.Path, "/v1/agent/check/deregister/"); ok && req.Method == http.MethodPut {
					removed = append(removed, id)
				}
			}
			slices.Sort(removed)
			for _, id := range current {
				if slices.Contains(removed, id) {
					t.Errorf("%s removed check %q, which the registration lists", what, id)
				}
			}
			if want := slices.Sorted(slices.Values(stale)); !replaced && !slices.Equal(removed, want) {
				t.Errorf("%s sent no replace-existing-checks and removed checks %q, want %q removed", what, removed, want)
			}
		})
	}
}

// agentWithChecks answers GET /v1/agent/checks as an agent holding these
// checks for serviceID (and, for a filter on that service, only those), and
// everything else as PlausibleAgent does.
func agentWithChecks(serviceID string, checkIDs ...string) http.HandlerFunc {
	checks := make(map[string]any, len(checkIDs))
	for _, id := range checkIDs {
		checks[id] = map[string]any{
			"Node": "node-1", "CheckID": id, "Name": "check " + id, "Status": "passing",
			"ServiceID": serviceID, "ServiceName": "web", "Type": "ttl",
		}
	}
	body, err := json.Marshal(checks)
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/agent/checks" {
			Answer(http.StatusOK, MetaHeader("9"), string(body))(w, r)
			return
		}
		PlausibleAgent(w, r)
	}
}

// sentRegistration is the part of a register request's body every backend
// sends alike, in Consul's field names.
type sentRegistration struct {
	ID     string
	Name   string
	Check  *struct{ CheckID string }
	Checks []struct{ CheckID string }
}

func (r sentRegistration) checkIDs() []string {
	var out []string
	if r.Check != nil {
		out = append(out, r.Check.CheckID)
	}
	for _, c := range r.Checks {
		out = append(out, c.CheckID)
	}
	return out
}

// registerBody decodes the body of the only register request f received.
func registerBody(t *testing.T, f *FakeAgent) sentRegistration {
	t.Helper()
	reqs := f.RequestsTo(http.MethodPut, "/v1/agent/service/register")
	if len(reqs) != 1 {
		t.Fatalf("the fake agent saw %q, want one PUT /v1/agent/service/register", f.Requests())
	}
	var sent sentRegistration
	if err := json.Unmarshal(reqs[0].Body, &sent); err != nil {
		t.Fatalf("%s sent body %q: %v", reqs[0], reqs[0].Body, err)
	}
	return sent
}
