package httpclient_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/registrytest"
)

// Retries and ejection are the Transport's own logic: these tests run it on
// registrytest's in-memory registry, without a Consul agent, against real
// HTTP servers on loopback and a port nothing listens on.

// memEnv is a cache reading from an in-memory registry.
type memEnv struct {
	m     *registrytest.Memory
	cache *discovery.Cache
}

func newMemEnv(t *testing.T) *memEnv {
	t.Helper()
	m := registrytest.NewMemory()
	cache, err := discovery.New(consul.Config{Addresses: []string{"memory:8500"}},
		discovery.WithBackend(func(consul.Config) (beacon.Registry, error) { return m, nil }),
		discovery.WithRateLimit(10*time.Millisecond, 10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	return &memEnv{m: m, cache: cache}
}

// add registers a passing instance of service at addr ("127.0.0.1:port").
func (e *memEnv) add(t *testing.T, service, id, addr string) {
	t.Helper()
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	err := e.m.Register(t.Context(), beacon.Registration{
		ID: id, Service: service, Address: "127.0.0.1", Port: port,
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}},
	})
	if err != nil {
		t.Fatalf("Register(%q) = %v", id, err)
	}
}

// attempts is a base transport counting the attempts sent to each address.
type attempts struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func newAttempts() *attempts {
	return &attempts{base: http.DefaultTransport.(*http.Transport).Clone(), n: map[string]int{}}
}

func (a *attempts) RoundTrip(r *http.Request) (*http.Response, error) {
	a.mu.Lock()
	a.n[r.URL.Host]++
	a.mu.Unlock()
	return a.base.RoundTrip(r)
}

func (a *attempts) count(addr string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[addr]
}

// do sends method to url and returns the backend that answered.
func do(ctx context.Context, c *http.Client, method, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader("x"))
	if err != nil {
		return "", err
	}
	if method == http.MethodPost {
		req.GetBody = nil // no key, and not idempotent: never retried anyway
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Header.Get("Backend"), nil
}

func TestMemoryRetries(t *testing.T) {
	e := newMemEnv(t)
	live := newBackend(t, "live")
	dead := testutil.ClosedAddr(t)
	e.add(t, "svc", "live", live.addr)
	e.add(t, "svc", "dead", dead)
	base := newAttempts()
	tr := httpclient.New(e.cache, httpclient.WithBase(base), httpclient.WithEjection(0, 0))
	t.Cleanup(func() { tr.Close() })
	c := &http.Client{Transport: tr, Timeout: deadline}

	const n = 10
	for i := range n {
		got, err := do(t.Context(), c, http.MethodGet, "http://svc/x")
		if err != nil || got != "live" {
			t.Fatalf("GET %d = %q, %v; want an answer from live, retried there after dead refused", i, got, err)
		}
	}
	if base.count(dead) == 0 {
		t.Fatal("no GET was sent to the dead instance: the retries were not exercised")
	}
	// A POST without an idempotency key is never retried: round robin
	// alternates, so exactly half fail, on the dead instance.
	failed := 0
	for i := range n {
		got, err := do(t.Context(), c, http.MethodPost, "http://svc/x")
		var he *httpclient.Error
		switch {
		case err == nil && got == "live":
		case errors.As(err, &he) && he.ID == "dead" && he.Attempts == 1 && errors.Is(err, syscall.ECONNREFUSED):
			failed++
		default:
			t.Fatalf("POST %d = %q, %v; want live's answer or an *Error of one attempt on dead", i, got, err)
		}
	}
	if failed != n/2 {
		t.Errorf("%d of %d POSTs failed, want %d (every one picked on dead, none retried)", failed, n, n/2)
	}
	if ej := tr.Ejected("svc"); ej != nil {
		t.Errorf("Ejected() with ejection off = %v, want none", ej)
	}
}

func TestMemoryEjection(t *testing.T) {
	e := newMemEnv(t)
	live := newBackend(t, "live")
	dead := testutil.ClosedAddr(t)
	e.add(t, "svc", "live", live.addr)
	e.add(t, "svc", "dead", dead)
	base := newAttempts()
	tr := httpclient.New(e.cache, httpclient.WithBase(base), httpclient.WithEjection(2, time.Hour))
	t.Cleanup(func() { tr.Close() })
	c := &http.Client{Transport: tr, Timeout: deadline}

	for i := range 20 {
		if got, err := do(t.Context(), c, http.MethodGet, "http://svc/x"); err != nil || got != "live" {
			t.Fatalf("GET %d = %q, %v; want live's answer", i, got, err)
		}
	}
	if n := base.count(dead); n != 2 {
		t.Errorf("attempts on the dead instance = %d, want 2: ejected after 2 failures in a row, then skipped", n)
	}
	if ej := tr.Ejected("svc"); len(ej) != 1 || ej[0].ID != "dead" {
		t.Errorf("Ejected(\"svc\") = %v, want [dead]", ej)
	}

	// live leaves: dead is the only instance, and the last one is never
	// ejected, so it is tried (and fails) rather than nothing.
	if err := e.m.Deregister(t.Context(), "live"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	for base.count(dead) == 2 {
		_, err := do(ctx, c, http.MethodGet, "http://svc/x")
		if ctx.Err() != nil {
			t.Fatalf("the dead instance was never tried again once alone (last error %v)", err)
		}
	}
	if ej := tr.Ejected("svc"); len(ej) != 0 {
		t.Errorf("Ejected(\"svc\") with only dead left = %v, want none", ej)
	}
}

// TestMemoryUnreachable: with the registry unreachable before its first
// answer, a request fails at once with the agent's error, matching
// beacon.ErrUnavailable, instead of waiting for the request's deadline.
func TestMemoryUnreachable(t *testing.T) {
	e := newMemEnv(t)
	e.m.Fail(registrytest.OpAll, beacon.ErrUnavailable)
	tr := httpclient.New(e.cache)
	t.Cleanup(func() { tr.Close() })
	c := &http.Client{Transport: tr} // no timeout: the error must come without one
	for _, svc := range []string{"first", "second"} {
		done := make(chan error, 1)
		go func() {
			_, err := do(t.Context(), c, http.MethodGet, "http://"+svc+"/x")
			done <- err
		}()
		select {
		case err := <-done:
			var ue *discovery.UnreachableError
			if !errors.Is(err, beacon.ErrUnavailable) || !errors.As(err, &ue) || !strings.Contains(err.Error(), "memory:8500") {
				t.Errorf("GET http://%s/x = %v, want a *discovery.UnreachableError naming memory:8500", svc, err)
			}
		case <-time.After(deadline):
			t.Fatalf("GET http://%s/x with the registry down: no answer within %v", svc, deadline)
		}
	}
}
