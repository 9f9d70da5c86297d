package discovery_test

// Fault injection. faultAgent is a fake Consul agent for what a real agent
// cannot be made to do on demand: answer X-Consul-Index: 0 forever, leave the
// header out or garble it, cut its JSON short, refuse with 429 or 500, or
// move its index backwards under a blocked query; a hung listener stands in
// for an agent that accepts and never answers. Everything else runs against
// real Consul (TestOutage). Every bound below is on request counts,
// computed from the elapsed time and the cache's documented limits; no test
// asserts how fast anything happens.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// Limits of the cache and its loop (internal/blocking) that the bounds below
// are computed from.
const (
	minBackoff    = 100 * time.Millisecond // the first wait after an error
	maxBackoff    = 10 * time.Second       // doubling stops here
	probeInterval = 500 * time.Millisecond // how often a down agent is probed
)

// fault is how a faultAgent answers.
type fault int

const (
	answerGood         fault = iota // 200, the index, the instances; blocks on ?index= as an agent does
	answerIndexZero                 // 200, X-Consul-Index: 0, the instances, never blocks
	answerNoIndex                   // 200 and the instances, no X-Consul-Index
	answerGarbageIndex              // 200 and the instances, X-Consul-Index: 7e3;drop
	answerTruncated                 // 200, the first half of the JSON, Content-Length to match
	answer429                       // 429 Too Many Requests
	answer500                       // 500, no leader
)

func (f fault) String() string {
	return [...]string{"good", "index 0", "no index", "garbage index", "truncated JSON", "429", "500"}[f]
}

// fakeRequest is one request a faultAgent received, and how it answered.
type fakeRequest struct {
	Service string
	Query   url.Values
	// Answered is set once the answer was chosen; Fault and Index (the
	// X-Consul-Index sent, "" for none) say what it was.
	Answered bool
	Fault    fault
	Index    string
}

// faultAgent answers GET /v1/health/service/:name, for every name (the
// cache's prober asks for "consul"), as its current fault says.
type faultAgent struct {
	srv  *httptest.Server
	seen chan struct{} // a request arrived (capacity 1)
	quit chan struct{} // closed when the test ends: blocked answers return

	mu      sync.Mutex
	fault   fault
	index   uint64
	ids     []string
	changed chan struct{} // closed and replaced at every change of state
	reqs    []fakeRequest
}

// newFaultAgent starts a fake agent answering good answers of the instances
// ids at index; it stops when the test ends.
func newFaultAgent(t *testing.T, index uint64, ids ...string) *faultAgent {
	t.Helper()
	a := &faultAgent{seen: make(chan struct{}, 1), index: index, ids: ids, changed: make(chan struct{})}
	a.srv, a.quit = fakeServer(t, a.serve)
	return a
}

// fakeServer serves h on loopback until the test ends. quit is closed
// first, so handlers blocked on it return before Close waits for them.
func fakeServer(t *testing.T, h http.HandlerFunc) (srv *httptest.Server, quit chan struct{}) {
	srv, quit = httptest.NewServer(h), make(chan struct{})
	t.Cleanup(func() {
		close(quit)
		srv.Close()
	})
	return srv, quit
}

// fakeConfig is a consul.Config for srv alone.
func fakeConfig(srv *httptest.Server) consul.Config {
	return consul.Config{Addresses: []string{srv.URL}}
}

// config is a consul.Config for this agent alone.
func (a *faultAgent) config() consul.Config { return fakeConfig(a.srv) }

// setFault makes every answer from now on, blocked ones included, f.
func (a *faultAgent) setFault(f fault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fault = f
	close(a.changed)
	a.changed = make(chan struct{})
}

// setGood makes the agent answer good answers of ids at index.
func (a *faultAgent) setGood(index uint64, ids ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fault, a.index, a.ids = answerGood, index, ids
	close(a.changed)
	a.changed = make(chan struct{})
}

// requests returns a copy of the requests for service so far.
func (a *faultAgent) requests(service string) []fakeRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []fakeRequest
	for _, r := range a.reqs {
		if r.Service == service {
			out = append(out, r)
		}
	}
	return out
}

// answered counts the requests for service answered with f.
func (a *faultAgent) answered(service string, f fault) int {
	n := 0
	for _, r := range a.requests(service) {
		if r.Answered && r.Fault == f {
			n++
		}
	}
	return n
}

// waitRequests waits until the agent has received n requests for service
// and returns them.
func (a *faultAgent) waitRequests(t *testing.T, service string, n int) []fakeRequest {
	t.Helper()
	end := time.After(deadline)
	for {
		if reqs := a.requests(service); len(reqs) >= n {
			return reqs
		}
		select {
		case <-a.seen:
		case <-end:
			t.Fatalf("the fake agent received %d requests for %q, want %d within %v", len(a.requests(service)), service, n, deadline)
		}
	}
}

func (a *faultAgent) serve(w http.ResponseWriter, r *http.Request) {
	service, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if r.Method != http.MethodGet || !ok || service == "" {
		http.Error(w, "fault agent: only GET /v1/health/service/:name", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	idx, err := strconv.ParseUint(q.Get("index"), 10, 64)
	// Like an agent, block on ?index= until the state moves or wait ends.
	// The request is recorded and its blocking decided under one lock, so
	// a change made as soon as a test sees the request still wakes it.
	a.mu.Lock()
	n := len(a.reqs)
	a.reqs = append(a.reqs, fakeRequest{Service: service, Query: q})
	blocks := err == nil && idx > 0 && a.fault == answerGood && a.index <= idx
	changed := a.changed
	a.mu.Unlock()
	select {
	case a.seen <- struct{}{}:
	default:
	}

	if blocks {
		wait := 5 * time.Minute
		if d, err := time.ParseDuration(q.Get("wait")); err == nil {
			wait = d
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-changed:
		case <-timer.C:
		case <-r.Context().Done():
			return
		case <-a.quit:
			return
		}
	}

	a.mu.Lock()
	f, body := a.fault, healthAnswer(service, a.ids)
	index := strconv.FormatUint(a.index, 10)
	switch f {
	case answerIndexZero:
		index = "0"
	case answerNoIndex, answer429, answer500:
		index = ""
	case answerGarbageIndex:
		index = "7e3;drop"
	}
	a.reqs[n].Answered, a.reqs[n].Fault, a.reqs[n].Index = true, f, index
	a.mu.Unlock()

	switch f {
	case answer429:
		http.Error(w, "Your IP is issuing too many concurrent connections, please rate limit your calls", http.StatusTooManyRequests)
		return
	case answer500:
		http.Error(w, "rpc error making call: No cluster leader", http.StatusInternalServerError)
		return
	case answerTruncated:
		// A whole HTTP answer whose JSON stops half-way: the client reads
		// to the end cleanly and must find the JSON malformed.
		body = body[:len(body)/2]
	}
	h := w.Header()
	if index != "" {
		h.Set("X-Consul-Index", index)
	}
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = io.WriteString(w, body)
}

// healthAnswer is Consul's answer listing passing instances ids of service.
func healthAnswer(service string, ids []string) string {
	entries := make([]string, len(ids))
	for i, id := range ids {
		entries[i] = fmt.Sprintf(`{"Node":{"Node":"node-%d","Address":"10.0.0.%d","Datacenter":"dc1"},`+
			`"Service":{"ID":%q,"Service":%q,"Tags":["v1"],"Address":"","Port":%d,"Meta":{"version":"1"},"Weights":{"Passing":1,"Warning":1}},`+
			`"Checks":[{"CheckID":"serfHealth","Status":"passing"},{"CheckID":%q,"Status":"passing"}]}`,
			i+1, i+1, id, service, 8000+i, "service:"+id)
	}
	return "[" + strings.Join(entries, ",") + "]"
}

// countingMetrics counts what the cache reports (one watched service per test).
type countingMetrics struct {
	requests, watchErrors, indexResets, published, aclHidden atomic.Int64
}

var _ discovery.Metrics = (*countingMetrics)(nil)

// Request counts the watches' queries; the change feed's (service ""),
// which the stale guard runs as its tripwire, is not one of them.
func (m *countingMetrics) Request(s string) {
	if s != "" {
		m.requests.Add(1)
	}
}
func (m *countingMetrics) WatchError(string)     { m.watchErrors.Add(1) }
func (m *countingMetrics) IndexReset(string)     { m.indexResets.Add(1) }
func (m *countingMetrics) Published(string, int) { m.published.Add(1) }
func (m *countingMetrics) ACLHidden(string)      { m.aclHidden.Add(1) }

// waitFirst starts watching service and waits for the first snapshot.
func waitFirst(t *testing.T, c *discovery.Cache, service string) (*discovery.Watcher, *discovery.Snapshot) {
	t.Helper()
	w, err := c.Watch(beacon.Query{Service: service})
	if err != nil {
		t.Fatalf("Watch(%q) = %v", service, err)
	}
	t.Cleanup(w.Close)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := w.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait() = %v, want the first snapshot", err)
	}
	return w, s
}

// TestIndexZeroForever: an agent that answers at once, always with
// X-Consul-Index: 0 (a Consul bug its documentation warns of: a client that
// sends index=0 back is never blocked and busy-loops). The cache treats 0 as
// 1, so no index ever "goes backwards", and its rate limiters bound the
// queries. Every query is admitted by one of two token buckets: the hot
// threshold's (WithHotThreshold: DefaultHotBurst, then one per
// DefaultHotEvery), which follows a moving index at once, or the ceiling's
// (WithRateLimit: burst, then one per every), which a hot loop waits on. On
// an idle machine the loop turns hot after about the hot burst and then
// polls at the ceiling; on a loaded one an answer can take longer than the
// cooling threshold and the loop cools and spends hot tokens again. Either
// way the agent sees at most what the two buckets can admit in the window,
// and 1 of slack: 25 + 50 + 2 + 10 + 1 = 88 in 1 s at one per 100 ms.
//
// This test can fail: build the cache with WithRateLimit(time.Microsecond,
// burst) and WithHotThreshold(time.Microsecond, 25) instead, keeping the
// bound computed from the constants here, and the agent sees hundreds of
// queries in the window (tried: 782 under -race), against a limit of 88.
// Before the index-0 fix in the blocking loop, every other query went
// out without an index and counted an IndexReset, failing the checks below.
func TestIndexZeroForever(t *testing.T) {
	const (
		every  = 100 * time.Millisecond
		burst  = 2
		window = time.Second
	)
	fake := newFaultAgent(t, 0, "a", "b", "c")
	fake.setFault(answerIndexZero)
	m := &countingMetrics{}
	c := newCache(t, fake.config(), discovery.WithRateLimit(every, burst), discovery.WithMetrics(m))

	start := time.Now()
	_, s := waitFirst(t, c, "web")
	if got := ids(s); !slices.Equal(got, []string{"a", "b", "c"}) || s.Err != nil {
		t.Fatalf("first snapshot = %v, %v; want [a b c], nil", got, s.Err)
	}
	time.Sleep(window - time.Since(start)) // the measured window, not a synchronisation
	c.Close()                              // no query after this
	elapsed := time.Since(start)

	reqs := fake.requests("web")
	hot := discovery.DefaultHotBurst + int(elapsed/discovery.DefaultHotEvery)
	limit := hot + burst + int(elapsed/every) + 1
	t.Logf("index 0 forever: %d queries in %v (limit %d: the hot bucket's %d + burst %d + one per %v + 1)", len(reqs), elapsed.Round(time.Millisecond), limit, hot, burst, every)
	if len(reqs) > limit {
		t.Errorf("the agent saw %d queries in %v, want at most %d (a busy loop)", len(reqs), elapsed, limit)
	}
	// Every query the loop started reached the agent, except perhaps the
	// one Close cancelled before it was sent.
	if n := m.requests.Load(); n < int64(len(reqs)) || n > int64(len(reqs))+1 {
		t.Errorf("Metrics.Request counted %d queries, the agent saw %d; want equal (or one more, cancelled by Close)", n, len(reqs))
	}
	if n := m.indexResets.Load(); n != 0 {
		t.Errorf("Metrics.IndexReset called %d times, want 0 (index 0 is treated as 1 and never goes backwards)", n)
	}
	if n := m.published.Load(); n != 1 {
		t.Errorf("Metrics.Published called %d times, want 1 (unchanged answers are not re-published)", n)
	}
	for i, r := range reqs {
		want := "1"
		if i == 0 {
			want = ""
		}
		if got := r.Query.Get("index"); got != want {
			t.Errorf("query %d carried index=%q, want %q (the first from 0, then index 0 treated as 1)", i, got, want)
		}
	}
}

// maxFailedQueries is the most queries a loop that backs off after every
// error (minBackoff doubling to maxBackoff, each wait jittered within
// [b/2, b]) can send in d, counting the first failed one at 0: it waits at
// least b/2 before each next one.
func maxFailedQueries(d time.Duration) int {
	n, b, slept := 1, minBackoff, time.Duration(0)
	for {
		slept += b / 2
		if slept > d {
			return n
		}
		n++
		b = min(2*b, maxBackoff)
	}
}

// TestErrorKeepsCacheAndRecovers: after a good first answer (3 instances)
// the agent turns faulty. The snapshot keeps the 3 instances, its index and
// its time, with the error set and matching the right sentinel; over the
// window the agent sees no more queries than the backoff allows (the rate
// limit is set loose enough not to space them); then the agent answers
// again, with 2 instances, and the cache converges on them. Without the
// backoff, the 1 ms rate limit would let through about 2,000 queries in the
// window, against a limit of 7.
func TestErrorKeepsCacheAndRecovers(t *testing.T) {
	const window = 2 * time.Second
	for _, tc := range []struct {
		fault fault
		want  error
	}{
		{answerNoIndex, beacon.ErrMalformedResponse},
		{answerGarbageIndex, beacon.ErrMalformedResponse},
		{answerTruncated, beacon.ErrMalformedResponse},
		{answer429, beacon.ErrRateLimited},
		{answer500, beacon.ErrUnavailable},
	} {
		t.Run(strings.ReplaceAll(tc.fault.String(), " ", "_"), func(t *testing.T) {
			t.Parallel()
			fake := newFaultAgent(t, 10, "a", "b", "c")
			m := &countingMetrics{}
			c := newCache(t, fake.config(), discovery.WithRateLimit(time.Millisecond, 2), discovery.WithMetrics(m))
			w, good := waitFirst(t, c, "web")
			if got := ids(good); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Fatalf("first snapshot = %v, want [a b c]", got)
			}
			fake.waitRequests(t, "web", 2) // the loop waits on index=10

			switched := time.Now()
			fake.setFault(tc.fault)
			s := until(t, w, "the fault is seen", func(s *discovery.Snapshot) bool { return s.Err != nil })
			unchanged := func(when string, s *discovery.Snapshot) {
				t.Helper()
				if got := ids(s); !slices.Equal(got, []string{"a", "b", "c"}) || s.Index != good.Index || !s.Updated.Equal(good.Updated) {
					t.Errorf("%s: snapshot = %v, index %d, updated %v; want the last good one: [a b c], index %d, updated %v",
						when, got, s.Index, s.Updated, good.Index, good.Updated)
				}
				if !errors.Is(s.Err, tc.want) {
					t.Errorf("%s: snapshot error = %v, want an error matching %v", when, s.Err, tc.want)
				}
			}
			unchanged("at the first error", s)
			if ep, err := c.Pick(context.Background(), "web", balancer.NewRoundRobin()); err != nil {
				t.Errorf("Pick() during the fault = %v, want an instance", err)
			} else {
				ep.Done()
			}

			time.Sleep(window) // the measured window, not a synchronisation
			unchanged("at the end of the window", w.Snapshot())
			elapsed := time.Since(switched)
			faulty := fake.answered("web", tc.fault)
			limit := maxFailedQueries(elapsed) + 1
			t.Logf("%v: %d failed queries in %v (backoff limit %d), %d probes; %d WatchError",
				tc.fault, faulty, elapsed.Round(time.Millisecond), limit, fake.answered("consul", tc.fault), m.watchErrors.Load())
			if faulty > limit {
				t.Errorf("%d queries answered %v in %v, want at most %d (the backoff is not spacing retries)", faulty, tc.fault, elapsed, limit)
			}
			// A 5xx marks the agent down: the watch waits while one prober
			// asks every probeInterval.
			if probes, limit := fake.answered("consul", tc.fault), int(elapsed/probeInterval)+1; probes > limit {
				t.Errorf("%d probes answered %v in %v, want at most %d", probes, tc.fault, elapsed, limit)
			}

			recovering := time.Now()
			fake.setGood(20, "a", "d")
			until(t, w, "the loop recovers", func(s *discovery.Snapshot) bool {
				return s.Err == nil && slices.Equal(ids(s), []string{"a", "d"})
			})
			t.Logf("%v: recovered %v after the agent answered again", tc.fault, time.Since(recovering).Round(time.Millisecond))
		})
	}
}

// hungAgent listens on loopback, accepts connections and never answers, as
// a paused agent does. It stops when the test ends.
func hungAgent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestHungAgent: an agent that accepts and never answers. Config.Timeout
// bounds each query, so the first Wait fails with ErrUnavailable before the
// caller's deadline, and Close leaves no goroutine behind; with a good agent
// configured second, the cache serves its instances.
func TestHungAgent(t *testing.T) {
	const timeout = 300 * time.Millisecond
	t.Run("Alone", func(t *testing.T) {
		// Cleanups run last first: the cache closes, then the agent, then
		// this checks that nothing started since here still runs.
		ignore := goleak.IgnoreCurrent()
		t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
		hung := hungAgent(t)
		c := newCache(t, consul.Config{Addresses: []string{hung}, Timeout: timeout})
		w, err := c.Watch(beacon.Query{Service: "web"})
		if err != nil {
			t.Fatalf("Watch() = %v", err)
		}
		defer w.Close()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		s, err := w.Wait(ctx)
		if ctx.Err() != nil {
			t.Fatalf("Wait() = %v, %v; returned only when the caller's deadline ended, want the query's timeout first", s, err)
		}
		if !errors.Is(err, beacon.ErrUnavailable) {
			t.Errorf("Wait() = %v, %v; want an error matching ErrUnavailable", s, err)
		}
	})
	t.Run("Failover", func(t *testing.T) {
		ignore := goleak.IgnoreCurrent()
		t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
		hung := hungAgent(t)
		good := newFaultAgent(t, 7, "a", "b", "c")
		c := newCache(t, consul.Config{Addresses: []string{hung, good.srv.URL}, Timeout: timeout})
		w, err := c.Watch(beacon.Query{Service: "web"})
		if err != nil {
			t.Fatalf("Watch() = %v", err)
		}
		defer w.Close()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_, err = w.Wait(ctx)
		t.Logf("first Wait() with [hung, good] = %v", err)
		until(t, w, "served from the second agent", func(s *discovery.Snapshot) bool {
			return s.Err == nil && slices.Equal(ids(s), []string{"a", "b", "c"})
		})
		insts, err := c.Instances(ctx, "web")
		if err != nil || len(insts) != 3 {
			t.Errorf("Instances() = %d instances, %v; want 3 from the second agent", len(insts), err)
		}
	})
}

// TestIndexGoesBackwards: the agent answers index 100, then, under the
// blocked query, index 5 with other instances (as a fresh agent would).
// The new instances are published, IndexReset is counted once, and the
// next query starts from 0 (no index) before blocking on 5.
func TestIndexGoesBackwards(t *testing.T) {
	fake := newFaultAgent(t, 100, "a", "b", "c")
	m := &countingMetrics{}
	c := newCache(t, fake.config(), discovery.WithRateLimit(10*time.Millisecond, 2), discovery.WithMetrics(m))
	w, s := waitFirst(t, c, "web")
	if got := ids(s); !slices.Equal(got, []string{"a", "b", "c"}) || s.Index != 100 {
		t.Fatalf("first snapshot = %v at index %d, want [a b c] at 100", got, s.Index)
	}
	fake.waitRequests(t, "web", 2) // the loop waits on index=100

	fake.setGood(5, "x", "y")
	s = until(t, w, "the fresh agent's instances are published", func(s *discovery.Snapshot) bool {
		return slices.Equal(ids(s), []string{"x", "y"})
	})
	if s.Err != nil || s.Index != 5 {
		t.Errorf("snapshot after the reset: index %d, error %v; want 5, nil", s.Index, s.Err)
	}
	if n := m.indexResets.Load(); n != 1 {
		t.Errorf("Metrics.IndexReset called %d times, want 1", n)
	}

	reqs := fake.waitRequests(t, "web", 4)
	want := []struct{ query, answer string }{
		{"", "100"},  // the first query
		{"100", "5"}, // blocked on 100; the index went backwards
		{"", "5"},    // after the reset: from 0
		{"5", ""},    // blocking on the new index (answered when the test ends)
	}
	for i, wr := range want {
		r := reqs[i]
		if got, has := r.Query.Get("index"), r.Query.Has("index"); got != wr.query || (wr.query == "" && has) {
			t.Errorf("query %d carried index=%q (present: %v), want %q", i, got, has, wr.query)
		}
		if wr.answer != "" && r.Index != wr.answer {
			t.Errorf("query %d answered with index %q, want %q", i, r.Index, wr.answer)
		}
	}
}

// TestOutage: a real agent stops for 30 s while 50 goroutines pick
// continuously; no pick fails during the outage, and the snapshot keeps the
// last good instances with the error attached. A fresh, empty agent then
// comes up on the same address; the keepers notice (their next heartbeat
// gets 404) and register again, and the cache converges: the time from the
// agent being ready to the cache holding all three again is logged (target
// 2 s). -short skips it.
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s outage; run without -short")
	}
	t.Parallel()
	const window = 30 * time.Second
	srv := consultest.NewServer(t)
	all := []string{"a", "b", "c"}
	for i, id := range all {
		// TTL 3 s: a heartbeat a second, so a keeper finds the fresh agent
		// empty within about a second.
		k, err := keeper.New(srv.Config(), beacon.Registration{ID: id, Service: "api", Address: "127.0.0.1", Port: 9001 + i}, keeper.WithTTL(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		err = k.Start(ctx)
		cancel()
		if err != nil {
			t.Fatalf("keeper %s: Start() = %v", id, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			_ = k.Stop(ctx)
		})
	}
	c := newCache(t, srv.Config())
	w, _ := waitFirst(t, c, "api")
	until(t, w, "all three passing", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), all) })

	var picks, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	rr := balancer.NewRoundRobin()
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ep, err := c.Pick(context.Background(), "api", rr)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ep.Done()
				}
				picks.Add(1)
				time.Sleep(time.Millisecond) // pacing, so the pickers leave the box to the agent
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	atStop := picks.Load() // picks before the stop are not the outage's
	srv.Stop()
	stopped := time.Now()
	s := until(t, w, "the outage is visible", func(s *discovery.Snapshot) bool { return s.Err != nil })
	if !errors.Is(s.Err, beacon.ErrUnavailable) || !slices.Equal(ids(s), all) {
		t.Errorf("during the outage: snapshot %v, error %v; want the last good %v, ErrUnavailable", ids(s), s.Err, all)
	}
	time.Sleep(window - time.Since(stopped)) // the outage itself, not a synchronisation
	// The outage lasts until the pickers have made at least 1,000 picks
	// since the stop (each of the 50 pauses 1 ms between picks, so on an
	// idle machine they make that many in well under a second of the
	// window): a count, so a loaded machine's slower pickers lengthen the
	// outage instead of failing it.
	testutil.Eventually(t, deadline, "1000 picks during the outage", func() error {
		return testutil.Want(picks.Load()-atStop >= 1000, "%d picks", picks.Load()-atStop)
	})
	picksDown, failedDown := picks.Load(), failures.Load()
	t.Logf("outage of %v: %d picks in it (%d before the stop), %d failed since the pickers started", time.Since(stopped).Round(time.Millisecond), picksDown-atStop, atStop, failedDown)
	if failedDown != 0 {
		t.Errorf("%d picks failed by the end of the outage (%d in it; first error: %v), want 0", failedDown, picksDown-atStop, firstErr.Load())
	}
	if s := w.Snapshot(); !slices.Equal(ids(s), all) || s.Err == nil || s.Age() < window/2 {
		t.Errorf("at the end of the outage: snapshot %v, error %v, age %v; want the last good %v, an error and an age near %v", ids(s), s.Err, s.Age(), all, window)
	}

	srv.Restart(t)
	restarted := time.Now()
	until(t, w, "the cache converges on the fresh agent", func(s *discovery.Snapshot) bool {
		return s.Err == nil && slices.Equal(ids(s), all)
	})
	t.Logf("fresh agent ready → keepers registered again → cache converged in %v (target 2 s)", time.Since(restarted).Round(time.Millisecond))
	// A pick can fail here only if the cache saw the fresh agent before the
	// keepers did (an empty answer is published, as it must be): logged.
	t.Logf("after the restart: %d picks, %d failed", picks.Load()-picksDown, failures.Load()-failedDown)
}
