package consulhttp_test

// The requests consulhttp sends, checked exactly on registrytest's fake
// agent: query strings, bodies, escaping, the deadline each request
// carries, and WithMaxBodyBytes. What every backend must do when an agent
// misbehaves (malformed answers, status mapping, hung agents, redirects,
// tokens, validation) is registrytest.RunHostile, run by TestHostileAgent
// in conformance_test.go.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/registrytest"
)

// fakeClient returns a client for the fake agent f built from cfg (its
// address is filled in), closed when the test ends.
func fakeClient(t *testing.T, f *registrytest.FakeAgent, cfg consul.Config, opts ...consulhttp.Option) *consulhttp.Client {
	t.Helper()
	return newClient(t, f.Config(cfg), opts...)
}

// only returns the only request f received, failing otherwise.
func only(t *testing.T, f *registrytest.FakeAgent) registrytest.Request {
	t.Helper()
	reqs := f.Requests()
	if len(reqs) != 1 {
		t.Fatalf("fake agent saw %d requests, want 1: %v", len(reqs), reqs)
	}
	return reqs[0]
}

// TestInstancesMaxBodyBytes checks WithMaxBodyBytes: an answer up to the cap
// is read, one byte more is malformed. registrytest.RunHostile checks the
// default cap.
func TestInstancesMaxBodyBytes(t *testing.T) {
	const maxBody = 1024
	// bigAnswer is a well-formed answer larger than maxBody.
	web := registrytest.WebAnswer
	bigAnswer := "[" + strings.Repeat(web[1:len(web)-1]+",", 5) + web[1:]
	if len(bigAnswer) <= maxBody {
		t.Fatalf("bigAnswer is %d bytes, want more than %d", len(bigAnswer), maxBody)
	}
	for _, tc := range []struct {
		name string
		body string
		ok   bool
	}{
		{"larger than the cap", bigAnswer, false},
		{"one byte over the cap", "[]" + strings.Repeat(" ", maxBody-1), false},
		{"exactly at the cap", "[]" + strings.Repeat(" ", maxBody-2), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := registrytest.NewFakeAgent(t, registrytest.Answer(http.StatusOK, registrytest.MetaHeader("5"), tc.body))
			c := fakeClient(t, f, consul.Config{}, consulhttp.WithMaxBodyBytes(maxBody))
			q := beacon.Query{Service: "web"}
			insts, _, err := c.Instances(context.Background(), q)
			switch {
			case tc.ok && err != nil:
				t.Errorf("Instances(%q) with a %d-byte answer and WithMaxBodyBytes(%d) = %v, want nil error", q.Service, len(tc.body), maxBody, err)
			case !tc.ok && !errors.Is(err, beacon.ErrMalformedResponse):
				t.Errorf("Instances(%q) with a %d-byte answer and WithMaxBodyBytes(%d) = %+v, %v; want an error matching beacon.ErrMalformedResponse", q.Service, len(tc.body), maxBody, insts, err)
			}
		})
	}
}

// TestIDsEscapedOnTheWire checks consulhttp's escaping exactly: each ID is
// one url.PathEscape'd path segment, with no query. registrytest.RunHostile
// checks only that the agent decodes IDs back unchanged.
func TestIDsEscapedOnTheWire(t *testing.T) {
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
				f := registrytest.NewFakeAgent(t, nil)
				c := fakeClient(t, f, consul.Config{})
				if err := tc.do(context.Background(), c); err != nil {
					t.Fatalf("%s(%q) = %v, want nil", tc.method, id, err)
				}
				r := only(t, f)
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
		Header: registrytest.MetaHeader("9"), Body: io.NopCloser(strings.NewReader("[]")), Request: r,
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
			c := newClient(t, cfg, consulhttp.WithHTTPClient(&http.Client{Transport: rec}))
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
			f := registrytest.NewFakeAgent(t, nil)
			c := fakeClient(t, f, consul.Config{Datacenter: tc.cfgDC})
			if _, _, err := c.Instances(context.Background(), tc.q); err != nil {
				t.Fatalf("Instances(%+v) = %v, want nil", tc.q, err)
			}
			r := only(t, f)
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
	f := registrytest.NewFakeAgent(t, registrytest.Answer(http.StatusOK, nil, ""))
	c := fakeClient(t, f, consul.Config{Datacenter: "dc1"})
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
	got := only(t, f)
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
	f := registrytest.NewFakeAgent(t, registrytest.Answer(http.StatusOK, nil, ""))
	c := fakeClient(t, f, consul.Config{})
	r := beacon.Registration{ID: "web-1", Service: "web"}
	if err := c.Register(context.Background(), r); err != nil {
		t.Fatalf("Register(%+v) = %v, want nil", r, err)
	}
	// Unset fields are left out, so Consul applies its own defaults.
	assertJSON(t, "Register()", only(t, f).Body, `{"ID": "web-1", "Name": "web"}`)
}

func TestUpdateTTLAndDeregisterShape(t *testing.T) {
	f := registrytest.NewFakeAgent(t, registrytest.Answer(http.StatusOK, nil, ""))
	c := fakeClient(t, f, consul.Config{})
	if err := c.UpdateTTL(context.Background(), "service:web-1", beacon.HealthWarning, "slow disk"); err != nil {
		t.Fatalf("UpdateTTL() = %v, want nil", err)
	}
	if err := c.Deregister(context.Background(), "web-1"); err != nil {
		t.Fatalf("Deregister() = %v, want nil", err)
	}
	reqs := f.Requests()
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
