package httpclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/keeper"
)

// deadline bounds every wait: generous for a loaded 2-core machine.
const deadline = 30 * time.Second

// env is one Consul agent and what a test registers in it.
type env struct {
	cfg   consul.Config
	reg   *consulhttp.Client
	cache *discovery.Cache
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	reg, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	// A fast rate limit, so that the cache follows every change at once.
	cache, err := discovery.New(cfg, discovery.WithRateLimit(10*time.Millisecond, 10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	return &env{cfg: cfg, reg: reg, cache: cache}
}

// backend is an HTTP server on 127.0.0.1 that answers its name and counts
// the requests it serves.
type backend struct {
	name string
	srv  *httptest.Server
	addr string
	port int
	hits atomic.Int64
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Backend", name)
		fmt.Fprintf(w, "%s %s %s", name, r.Method, body)
	}))
	t.Cleanup(b.srv.Close)
	b.addr = b.srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(b.addr)
	b.port, _ = strconv.Atoi(port)
	return b
}

// register registers b as an instance of service whose TTL check passes
// for an hour: Consul keeps it passing whatever happens to the server.
func (e *env) register(t *testing.T, service string, b *backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	err := e.reg.Register(ctx, beacon.Registration{
		ID: b.name, Service: service, Address: "127.0.0.1", Port: b.port,
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}},
	})
	if err != nil {
		t.Fatalf("Register(%q) = %v", b.name, err)
	}
}

// backends starts n backends named <service>-0… and registers them.
func (e *env) backends(t *testing.T, service string, n int) []*backend {
	t.Helper()
	bs := make([]*backend, n)
	for i := range bs {
		bs[i] = newBackend(t, service+"-"+strconv.Itoa(i))
		e.register(t, service, bs[i])
	}
	e.waitInstances(t, service, n)
	return bs
}

// waitInstances waits until the cache publishes n instances of service.
func (e *env) waitInstances(t *testing.T, service string, n int) {
	t.Helper()
	w, err := e.cache.Watch(beacon.Query{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	timeout := time.After(deadline)
	for {
		if s := w.Snapshot(); s != nil && s.Set().Len() == n {
			return
		}
		select {
		case <-w.Changed():
		case <-timeout:
			t.Fatalf("the cache never saw %d instances of %q", n, service)
		}
	}
}

// set returns the cache's current Set for service.
func (e *env) set(t *testing.T, service string) *balancer.Set {
	t.Helper()
	w, err := e.cache.Watch(beacon.Query{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := w.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s.Set()
}

// transport returns a Transport on e's cache, closed when the test ends.
func (e *env) transport(t *testing.T, opts ...httpclient.Option) *httpclient.Transport {
	tr := httpclient.New(e.cache, opts...)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// dialCounter is a base transport that counts the dials to each address.
type dialCounter struct {
	*http.Transport
	mu    sync.Mutex
	dials map[string]int
}

func newDialCounter() *dialCounter {
	d := &dialCounter{dials: map[string]int{}}
	var dialer net.Dialer
	d.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.mu.Lock()
		d.dials[addr]++
		d.mu.Unlock()
		return dialer.DialContext(ctx, network, addr)
	}}
	return d
}

func (d *dialCounter) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[addr]
}

// get GETs url and returns the backend that answered.
func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Header.Get("Backend"), nil
}

func TestRoundRobinAcrossInstances(t *testing.T) {
	e := newEnv(t)
	bs := e.backends(t, "hello", 3)
	c := &http.Client{Transport: e.transport(t), Timeout: deadline}

	const n = 300
	got := map[string]int{}
	for range n {
		name, err := get(t.Context(), c, "http://hello/x")
		if err != nil {
			t.Fatalf("GET http://hello/x = %v", err)
		}
		got[name]++
	}
	for _, b := range bs {
		if lo, hi := n/3*8/10, n/3*12/10; got[b.name] < lo || got[b.name] > hi {
			t.Errorf("answers from %s = %d, want within [%d, %d] (all: %v)", b.name, got[b.name], lo, hi, got)
		}
		if h := b.hits.Load(); h != int64(got[b.name]) {
			t.Errorf("%s served %d requests, and answered %d", b.name, h, got[b.name])
		}
	}
}

// TestRoundRobinPerService: with the default balancer each service keeps its
// own position, so requests alternating between services spread evenly.
func TestRoundRobinPerService(t *testing.T) {
	e := newEnv(t)
	alpha, beta := e.backends(t, "alpha", 2), e.backends(t, "beta", 2)
	c := &http.Client{Transport: e.transport(t), Timeout: deadline}
	for range 100 {
		for _, url := range []string{"http://alpha/x", "http://beta/x"} {
			if _, err := get(t.Context(), c, url); err != nil {
				t.Fatalf("GET %s = %v", url, err)
			}
		}
	}
	for _, b := range append(alpha, beta...) {
		if got := b.hits.Load(); got != 50 {
			t.Errorf("%s served %d of 100 alternating GETs, want 50", b.name, got)
		}
	}
}

func TestRetriesAroundKilledInstance(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		retries int
	}{
		{"retries", 2},
		{"no retries", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service := "hello" + strconv.Itoa(tt.retries)
			bs := e.backends(t, service, 3)
			dead := bs[2]
			base := newDialCounter()
			// Ejected for longer than the test runs.
			tr := e.transport(t, httpclient.WithBase(base), httpclient.WithRetries(tt.retries), httpclient.WithEjection(3, time.Hour))
			c := &http.Client{Transport: tr, Timeout: deadline}
			url := "http://" + service + "/x"

			failures := 0
			var dialsAfterKill int
			for i := range 300 {
				if i == 100 {
					dead.srv.Close() // still passing in Consul
					dialsAfterKill = base.count(dead.addr)
				}
				if _, err := get(t.Context(), c, url); err != nil {
					failures++
					if !errors.Is(err, syscall.ECONNREFUSED) {
						t.Errorf("GET %s = %v, want connection refused", url, err)
					}
				}
			}
			t.Logf("retries %d: %d failed GETs of 300; %d dials to the killed instance after the kill", tt.retries, failures, base.count(dead.addr)-dialsAfterKill)
			switch {
			case tt.retries > 0 && failures != 0:
				t.Errorf("with retries: %d GETs failed, want 0", failures)
			case tt.retries == 0 && failures == 0:
				t.Errorf("without retries: no GET failed; the scenario does not exercise retries")
			}

			ejected := tr.Ejected(service)
			if len(ejected) != 1 || ejected[0].ID != dead.name {
				t.Fatalf("Ejected(%q) = %v, want [%s]", service, ejected, dead.name)
			}
			if n := base.count(dead.addr) - dialsAfterKill; n == 0 {
				t.Errorf("no dial to the killed instance after the kill; it was never tried")
			}
			// Once ejected, it is not tried.
			before := base.count(dead.addr)
			hits := []int64{bs[0].hits.Load(), bs[1].hits.Load()}
			for range 100 {
				if _, err := get(t.Context(), c, url); err != nil {
					t.Fatalf("GET %s after the ejection = %v", url, err)
				}
			}
			if after := base.count(dead.addr); after != before {
				t.Errorf("dials to the ejected instance during 100 GETs = %d, want 0", after-before)
			}
			// And the load is spread over the survivors.
			for i, h := range hits {
				if got := bs[i].hits.Load() - h; got != 50 {
					t.Errorf("%s served %d of 100 GETs after the ejection, want 50", bs[i].name, got)
				}
			}
			base.CloseIdleConnections()
		})
	}
}

func TestGracefulDrainLosesNothing(t *testing.T) {
	e := newEnv(t)
	e.backends(t, "hello", 2)
	drained := newBackend(t, "hello-drained")
	k, err := keeper.New(e.cfg, beacon.Registration{ID: drained.name, Service: "hello", Address: "127.0.0.1", Port: drained.port},
		keeper.WithDrainGrace(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Start(ctx); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Cleanup(func() { _ = k.Stop(context.Background()) })
	e.waitInstances(t, "hello", 3)

	c := &http.Client{Transport: e.transport(t, httpclient.WithRetries(0)), Timeout: deadline}
	stopped := make(chan error, 1) // Stop's result, after the server is shut down too
	var hitsAtStop int64
	tick := time.NewTicker(10 * time.Millisecond) // about 100 requests a second
	defer tick.Stop()
	var sent, failed, afterShutdown int
	for sent < 200 || afterShutdown < 50 {
		<-tick.C
		if sent == 50 {
			ch := stopped
			go func() {
				err := k.Stop(ctx)
				hitsAtStop = drained.hits.Load()
				drained.srv.Close()
				ch <- err
			}()
		}
		if _, err := get(t.Context(), c, "http://hello/x"); err != nil {
			failed++
			t.Errorf("GET %d: %v", sent, err)
		}
		sent++
		if stopped == nil {
			afterShutdown++
			continue
		}
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("Stop() = %v", err)
			}
			t.Logf("drain and shutdown done after request %d", sent)
			stopped = nil
		default:
		}
	}
	t.Logf("%d GETs, %d failed; the drained instance served %d, none after Stop returned", sent, failed, hitsAtStop)
	if failed != 0 {
		t.Errorf("%d of %d GETs failed across a graceful drain, want 0", failed, sent)
	}
	if hitsAtStop == 0 {
		t.Errorf("the drained instance served nothing before the drain; the test proves nothing")
	}
}

// preferring is a balancer that picks the instance with ID id whenever the
// Set has it, and otherwise goes round robin. It picks through its inner
// balancer and returns that balancer's picks, so that their Done stays right
// whichever balancer it wraps.
type preferring struct {
	id string
	rr balancer.Balancer
}

func (p preferring) Pick(s *balancer.Set) (balancer.Picked, error) {
	for range s.Len() {
		ep, err := p.rr.Pick(s)
		if err != nil {
			return balancer.Picked{}, err
		}
		if ep.Instance.ID == p.id {
			return ep, nil
		}
		ep.Done()
	}
	return p.rr.Pick(s)
}

// calls is a base transport that counts the requests it is given.
type calls struct {
	http.RoundTripper
	n atomic.Int64
}

func (c *calls) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

func TestOnlyIdempotentRequestsAreRetried(t *testing.T) {
	e := newEnv(t)
	live := e.backends(t, "hello", 1)[0]
	dead := newBackend(t, "hello-dead")
	dead.srv.Close()
	e.register(t, "hello", dead)
	e.waitInstances(t, "hello", 2)

	base := &calls{RoundTripper: &http.Transport{}}
	defer base.RoundTripper.(*http.Transport).CloseIdleConnections()
	// Every first attempt goes to the dead instance, which is never ejected.
	tr := e.transport(t, httpclient.WithBase(base), httpclient.WithBalancer(preferring{id: dead.name, rr: balancer.NewRoundRobin()}), httpclient.WithEjection(0, 0))
	c := &http.Client{Transport: tr, Timeout: deadline}

	tests := []struct {
		name    string
		method  string
		body    string
		oneShot bool // a body without GetBody
		header  string
		retry   bool
	}{
		{"GET", http.MethodGet, "", false, "", true},
		{"HEAD", http.MethodHead, "", false, "", true},
		{"DELETE", http.MethodDelete, "", false, "", true},
		{"PUT", http.MethodPut, "put body", false, "", true},
		{"PUT one-shot body", http.MethodPut, "put body", true, "", false},
		{"POST", http.MethodPost, "post body", false, "", false},
		{"POST without body", http.MethodPost, "", false, "", false},
		{"PATCH", http.MethodPatch, "patch body", false, "", false},
		{"POST with Idempotency-Key", http.MethodPost, "post body", false, "Idempotency-Key", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			switch {
			case tt.oneShot:
				body = io.NopCloser(strings.NewReader(tt.body))
			case tt.body != "":
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, "http://hello/x", body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set(tt.header, "42")
			}
			calls, hits := base.n.Load(), live.hits.Load()
			resp, err := c.Do(req)
			if !tt.retry {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("%s to a dead instance succeeded, want an error", tt.method)
				}
				var he *httpclient.Error
				if !errors.As(err, &he) || he.ID != dead.name || he.Attempts != 1 || !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("%s to a dead instance = %v, want a refused *httpclient.Error from %s after 1 attempt", tt.method, err, dead.name)
				}
				if got := base.n.Load() - calls; got != 1 {
					t.Errorf("%s to a dead instance was sent %d times, want 1", tt.method, got)
				}
				if got := live.hits.Load() - hits; got != 0 {
					t.Errorf("the live instance served %d requests, want 0", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s = %v, want a retry on the live instance", tt.method, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if b := resp.Header.Get("Backend"); b != live.name {
				t.Errorf("%s answered by %q, want %q", tt.method, b, live.name)
			}
			if want := live.name + " " + tt.method + " " + tt.body; tt.method != http.MethodHead && string(got) != want {
				t.Errorf("%s answer = %q, want %q (the body sent again)", tt.method, got, want)
			}
			if n := base.n.Load() - calls; n != 2 {
				t.Errorf("%s was sent %d times, want 2 (dead, then live)", tt.method, n)
			}
		})
	}
}

// failingBase fails the test when anything is sent.
type failingBase struct{ t *testing.T }

func (f failingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	f.t.Errorf("RoundTrip(%s) reached the base transport", r.URL)
	return nil, errors.New("unexpected")
}

// closeTracker records whether a request body was closed.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestUnresolvable(t *testing.T) {
	e := newEnv(t)
	tr := e.transport(t, httpclient.WithBase(failingBase{t}))

	// Names Consul accepts are looked up, never resolved through DNS, even
	// those DNS could serve.
	for _, name := range []string{"nobody", "hello.service.consul", "-hello", strings.Repeat("a", 64)} {
		t.Run("unknown service "+name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+name+"/x", nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, beacon.ErrNoInstances) || !strings.Contains(fmt.Sprint(err), `"`+name+`"`) {
				t.Errorf("RoundTrip(http://%s/x) = %v, want %v naming the service", name, err, beacon.ErrNoInstances)
			}
		})
	}

	watching := e.cache.Watching()
	tests := []struct {
		url  string
		want error // nil: any error
	}{
		{"http://1.2.3.4/x", beacon.ErrInvalid},
		{"http://1.2.3.4:80/x", beacon.ErrInvalid},
		{"http://[::1]/x", beacon.ErrInvalid},
		{"http://" + strings.Repeat("a", 513) + "/x", beacon.ErrInvalid},
		{"http:///x", beacon.ErrInvalid},
		{"ftp://hello/x", nil},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			body := &closeTracker{Reader: strings.NewReader("x")}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tt.url, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip(%s) succeeded, want an error", tt.url)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("RoundTrip(%s) = %v, want %v", tt.url, err, tt.want)
			}
			if !body.closed.Load() {
				t.Errorf("RoundTrip(%s) did not close the request body", tt.url)
			}
		})
	}
	if got := e.cache.Watching(); got != watching {
		t.Errorf("watches after invalid hosts = %d, want %d: something was looked up", got, watching)
	}
}

func TestDoneAccounting(t *testing.T) {
	e := newEnv(t)
	e.backends(t, "hello", 3)
	dead := newBackend(t, "hello-dead")
	dead.srv.Close()
	e.register(t, "hello", dead)
	e.waitInstances(t, "hello", 4)

	tr := e.transport(t, httpclient.WithBalancer(balancer.NewP2C()))
	c := &http.Client{Transport: tr, Timeout: deadline}
	// Ways of finishing with a response, all of which must end the request.
	finish := []func(*http.Response) error{
		func(r *http.Response) error { _, err := io.ReadAll(r.Body); r.Body.Close(); return err },
		func(r *http.Response) error { return r.Body.Close() },
		func(r *http.Response) error { _, err := io.ReadAll(r.Body); r.Body.Close(); r.Body.Close(); return err },
		func(r *http.Response) error { // read to EOF, closed later
			_, err := io.ReadAll(r.Body)
			defer r.Body.Close()
			return err
		},
	}
	methods := []string{http.MethodGet, http.MethodHead}

	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			for i := range 40 {
				req, _ := http.NewRequestWithContext(t.Context(), methods[i%len(methods)], "http://hello/x", nil)
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					t.Errorf("goroutine %d: %s = %v", g, req.Method, err)
					continue
				}
				if err := finish[(g+i)%len(finish)](resp); err != nil {
					t.Errorf("reading the body: %v", err)
				}
			}
		})
	}
	wg.Wait()

	// A request cancelled while in flight ends too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := get(ctx, c, "http://hello/x"); !errors.Is(err, context.Canceled) {
		t.Errorf("GET with a cancelled context = %v, want %v", err, context.Canceled)
	}

	for _, ep := range e.set(t, "hello").Endpoints() {
		if got := ep.InFlight(); got != 0 {
			t.Errorf("InFlight(%s) after every response was closed = %d, want 0", ep.Instance.ID, got)
		}
	}
	if ej := tr.Ejected("hello"); len(ej) != 1 || ej[0].ID != dead.name {
		t.Errorf("Ejected(%q) = %v, want [%s]", "hello", ej, dead.name)
	}
	if failed.Load() != 0 {
		t.Errorf("%d requests failed, want 0", failed.Load())
	}
}

// TestNeverEjectsTheLastInstance: a lone failing instance keeps being tried.
func TestNeverEjectsTheLastInstance(t *testing.T) {
	e := newEnv(t)
	dead := newBackend(t, "lonely-0")
	dead.srv.Close()
	e.register(t, "lonely", dead)
	e.waitInstances(t, "lonely", 1)

	base := &calls{RoundTripper: &http.Transport{}}
	defer base.RoundTripper.(*http.Transport).CloseIdleConnections()
	tr := e.transport(t, httpclient.WithBase(base), httpclient.WithEjection(1, time.Hour))
	c := &http.Client{Transport: tr, Timeout: deadline}
	for range 5 {
		if _, err := get(t.Context(), c, "http://lonely/x"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("GET http://lonely/x = %v, want connection refused", err)
		}
	}
	// Three attempts each (retries go to the only instance there is).
	if got := base.n.Load(); got != 15 {
		t.Errorf("attempts on the lone instance = %d, want 15", got)
	}
	if ej := tr.Ejected("lonely"); len(ej) != 0 {
		t.Errorf("Ejected(%q) = %v, want none", "lonely", ej)
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t)
	e.backends(t, "hello", 1)
	tr := httpclient.New(e.cache)
	c := &http.Client{Transport: tr, Timeout: deadline}
	if _, err := get(t.Context(), c, "http://hello/x"); err != nil {
		t.Fatalf("GET = %v", err)
	}
	watching := e.cache.Watching()
	tr.Close()
	tr.Close()
	if got := e.cache.Watching(); got != watching-1 {
		t.Errorf("watches after Close = %d, want %d", got, watching-1)
	}
	if _, err := get(t.Context(), c, "http://hello/x"); !errors.Is(err, httpclient.ErrClosed) {
		t.Errorf("GET after Close = %v, want %v", err, httpclient.ErrClosed)
	}
}
