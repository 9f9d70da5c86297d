package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/internal/testutil"
)

// fleet is n HTTP servers on loopback, each counting the calls it gets,
// registered as instances web-1 ... web-n with TTL checks of the given
// health.
type fleet struct {
	ids   []string
	calls map[string]*atomic.Int64
}

func startFleet(t *testing.T, r beacon.Registry, service string, health ...beacon.Health) *fleet {
	t.Helper()
	f := &fleet{calls: map[string]*atomic.Int64{}}
	for i, h := range health {
		id := fmt.Sprintf("%s-%d", service, i+1)
		n := &atomic.Int64{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n.Add(1)
			io.WriteString(w, id)
		}))
		t.Cleanup(srv.Close)
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		err := r.Register(ctx, beacon.Registration{ID: id, Service: service, Address: "127.0.0.1", Port: p,
			Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: h}}})
		cancel()
		if err != nil {
			t.Fatalf("Register(%q) = %v", id, err)
		}
		f.ids = append(f.ids, id)
		f.calls[id] = n
	}
	return f
}

// counts returns each instance's calls since the last counts.
func (f *fleet) counts() map[string]int64 {
	out := map[string]int64{}
	for id, n := range f.calls {
		out[id] = n.Swap(0)
	}
	return out
}

// callThrough sends n GETs to http://service/ through an httpclient on c
// and returns how many calls each instance counted.
func callThrough(t *testing.T, hc *http.Client, f *fleet, service string, n int) map[string]int64 {
	t.Helper()
	f.counts()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+service+"/", nil)
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("call %d through httpclient: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cancel()
	}
	return f.counts()
}

// weightedPicks picks n times with a Weighted balancer from w's snapshot.
func weightedPicks(t *testing.T, w *discovery.Watcher, n int) map[string]int64 {
	t.Helper()
	b := balancer.NewWeighted()
	out := map[string]int64{}
	for range n {
		p, err := w.Pick(b)
		if err != nil {
			t.Fatalf("Pick(Weighted) = %v", err)
		}
		out[p.Instance.ID]++
		p.Done()
	}
	return out
}

// spread checks that exactly the instances want got calls, each at least
// half its fair share of total.
func spread(t *testing.T, what string, got map[string]int64, total int, want ...string) {
	t.Helper()
	fair := float64(total) / float64(len(want))
	for id, n := range got {
		in := slices.Contains(want, id)
		switch {
		case in && float64(n) < fair/2:
			t.Errorf("%s: %s got %d of %d calls, want at least half its fair share %.0f (all: %v)", what, id, n, total, fair, got)
		case !in && n != 0:
			t.Errorf("%s: %s got %d calls, want none (all: %v)", what, id, n, got)
		}
	}
	t.Logf("%s: %v", what, got)
}

// panicRecorder is Metrics that records PanicObserver calls.
type panicRecorder struct {
	nopMetrics
	mu     sync.Mutex
	events []string
}

func (m *panicRecorder) Panic(service string, on bool) {
	m.mu.Lock()
	m.events = append(m.events, fmt.Sprintf("%s:%v", service, on))
	m.mu.Unlock()
}

func (m *panicRecorder) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

func panicStatsOf(t *testing.T, c *discovery.Cache, service string) discovery.WatchStats {
	t.Helper()
	for _, st := range c.Stats() {
		if st.Service == service && st.PanicThreshold > 0 {
			return st
		}
	}
	t.Fatalf("Stats() = %+v, want a watch of %q with a panic threshold", c.Stats(), service)
	return discovery.WatchStats{}
}

func panicking(inPanic bool, want ...string) func(*discovery.Snapshot) bool {
	return func(s *discovery.Snapshot) bool { return s.Panic == inPanic && slices.Equal(ids(s), want) }
}

// TestPanicThreshold is issue 14's acceptance for the panic threshold, on
// a real agent: five instances, threshold 0.5. One passing → every
// instance is published, Panic, and calls through httpclient and Weighted
// picks spread over all five; one in maintenance → left out even in
// panic; three passing of the four left → back to the passing ones.
func TestPanicThreshold(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	f := startFleet(t, r, "web", beacon.HealthPassing, beacon.HealthCritical, beacon.HealthCritical, beacon.HealthCritical, beacon.HealthCritical)
	rec := &panicRecorder{}
	logs := &testutil.Buffer{}
	c := newCache(t, srv.Config(), discovery.WithPanicThreshold(0.5), discovery.WithMetrics(rec),
		discovery.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	w := watchWeb(t, c)
	tr := httpclient.New(c, httpclient.WithRetries(0))
	t.Cleanup(func() { tr.Close() })
	hc := &http.Client{Transport: tr}

	all := []string{"web-1", "web-2", "web-3", "web-4", "web-5"}
	s := until(t, w, "1 of 5 passing: panic, all five published", panicking(true, all...))
	for _, in := range s.Instances {
		if want := map[bool]beacon.Health{true: beacon.HealthPassing, false: beacon.HealthCritical}[in.ID == "web-1"]; in.Health != want {
			t.Errorf("in panic, %s Health = %s, want %s (the truth, not the weighting)", in.ID, in.Health, want)
		}
	}
	for _, e := range s.Set().Endpoints() {
		if e.Weight() != 1 {
			t.Errorf("in panic, Set weight of %s (%s) = %d, want 1, as if passing", e.Instance.ID, e.Instance.Health, e.Weight())
		}
	}
	st := panicStatsOf(t, c, "web")
	if !st.Panic || st.Panics != 1 || st.PanicThreshold != 0.5 || st.PanicSince.IsZero() || st.Instances != 5 {
		t.Errorf("Stats() in panic = %+v, want Panic, Panics 1, PanicThreshold 0.5, a PanicSince, 5 instances", st)
	}
	spread(t, "httpclient, 1 of 5 passing", callThrough(t, hc, f, "web", 500), 500, all...)
	spread(t, "Weighted, 1 of 5 passing", weightedPicks(t, w, 1000), 1000, all...)

	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := r.Maintenance(ctx, "web-5", true, "panic test"); err != nil {
		t.Fatal(err)
	}
	four := all[:4]
	until(t, w, "web-5 in maintenance: left out even in panic", panicking(true, four...))
	spread(t, "httpclient, 1 of 4 passing, web-5 in maintenance", callThrough(t, hc, f, "web", 400), 400, four...)
	spread(t, "Weighted, 1 of 4 passing, web-5 in maintenance", weightedPicks(t, w, 1000), 1000, four...)

	setHealth(t, r, "web-2", beacon.HealthPassing)
	setHealth(t, r, "web-3", beacon.HealthPassing)
	three := all[:3]
	until(t, w, "3 of 4 passing: back to passing-only", panicking(false, three...))
	spread(t, "httpclient, 3 of 4 passing", callThrough(t, hc, f, "web", 300), 300, three...)
	st = panicStatsOf(t, c, "web")
	if st.Panic || st.Panics != 1 || st.Instances != 3 {
		t.Errorf("Stats() after panic = %+v, want Panic false, Panics 1, 3 instances", st)
	}
	testutil.Eventually(t, deadline, "PanicObserver saw web enter and leave panic", func() error {
		got, want := rec.all(), []string{"web:true", "web:false"}
		return testutil.Want(slices.Equal(got, want), "PanicObserver saw %q, want %q", got, want)
	})
	for _, msg := range []string{"discovery: panic:", "discovery: leaving panic"} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, logs.String())
		}
	}

	// Once more into panic: counted again.
	setHealth(t, r, "web-2", beacon.HealthCritical)
	setHealth(t, r, "web-3", beacon.HealthCritical)
	until(t, w, "1 of 4 passing again: panic", panicking(true, four...))
	if st := panicStatsOf(t, c, "web"); st.Panics != 2 {
		t.Errorf("Stats().Panics after the second panic = %d, want 2", st.Panics)
	}
	// Without ?passing the agent still streams: the changes since the
	// first answer came through blocking queries on its streaming backend.
	if b := panicStatsOf(t, c, "web").Backend; b != beacon.QueryBackendStreaming {
		t.Errorf("Stats().Backend after the changes = %q, want %q", b, beacon.QueryBackendStreaming)
	}
}

// TestPanicThresholdAndNoPassingPolicy: with a threshold, the no-passing
// policy never applies (none passing is panic: warning and critical
// instances are published); a watch that clears the threshold gets the
// policy's warning instances; passing ones, once enough, win over both.
func TestPanicThresholdAndNoPassingPolicy(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "warn-1", "svc", beacon.HealthWarning)
	register(t, r, "warn-2", "svc", beacon.HealthWarning)
	register(t, r, "crit-1", "svc", beacon.HealthCritical)
	register(t, r, "crit-2", "svc", beacon.HealthCritical)
	c := newCache(t, srv.Config(), discovery.WithNoPassingPolicy(discovery.FallBackToWarning), discovery.WithPanicThreshold(0.5))

	open := func(opts ...discovery.WatchOption) *discovery.Watcher {
		w, err := c.Watch(beacon.Query{Service: "svc"}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		return w
	}
	withT, noT := open(), open(discovery.PanicThreshold(0))
	until(t, withT, "none passing with a threshold: panic, all four", panicking(true, "crit-1", "crit-2", "warn-1", "warn-2"))
	until(t, noT, "none passing, threshold cleared: FallBackToWarning", panicking(false, "warn-1", "warn-2"))
	if got := c.Watching(); got != 2 {
		t.Errorf("Watching() = %d, want 2 (the threshold is part of a watch's identity)", got)
	}

	register(t, r, "pass-1", "svc", beacon.HealthPassing)
	register(t, r, "pass-2", "svc", beacon.HealthPassing)
	until(t, withT, "2 of 6 passing: still panic", panicking(true, "crit-1", "crit-2", "pass-1", "pass-2", "warn-1", "warn-2"))
	until(t, noT, "2 passing, threshold cleared: passing only", panicking(false, "pass-1", "pass-2"))
	register(t, r, "pass-3", "svc", beacon.HealthPassing)
	until(t, withT, "3 of 7 passing: still panic", panicking(true, "crit-1", "crit-2", "pass-1", "pass-2", "pass-3", "warn-1", "warn-2"))
	register(t, r, "pass-4", "svc", beacon.HealthPassing)
	until(t, withT, "4 of 8 passing: the share is reached, passing only", panicking(false, "pass-1", "pass-2", "pass-3", "pass-4"))

	// Every instance asked for: no threshold applies, nothing is in panic.
	all, err := c.Watch(beacon.Query{Service: "svc", IncludeUnhealthy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	s := until(t, all, "IncludeUnhealthy: all eight", func(s *discovery.Snapshot) bool { return len(s.Instances) == 8 })
	if s.Panic {
		t.Errorf("IncludeUnhealthy watch Panic = true, want false (it has no threshold)")
	}
}

// TestPanicThresholdValidation: a threshold outside [0, 1] is refused
// before anything is sent.
func TestPanicThresholdValidation(t *testing.T) {
	cfg := consul.Config{Addresses: []string{testutil.ClosedAddr(t)}}
	for _, p := range []float64{-0.1, 1.5, math.NaN(), math.Inf(1)} {
		if c, err := discovery.New(cfg, discovery.WithPanicThreshold(p)); !errors.Is(err, beacon.ErrInvalid) {
			if c != nil {
				c.Close()
			}
			t.Errorf("New(WithPanicThreshold(%v)) = %v, want ErrInvalid", p, err)
		}
	}
	c := newCache(t, cfg)
	if _, err := c.Watch(beacon.Query{Service: "web"}, discovery.PanicThreshold(2)); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Watch(PanicThreshold(2)) = %v, want ErrInvalid", err)
	}
	if c.Watching() != 0 {
		t.Errorf("Watching() = %d after a refused watch, want 0", c.Watching())
	}
}

// TestPanicSnapshotFile: a snapshot saved in panic is served in panic by
// the next process while Consul is unreachable: every saved instance,
// weighted as passing.
func TestPanicSnapshotFile(t *testing.T) {
	path := t.TempDir() + "/snapshots.json"
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "a", "saved", beacon.HealthPassing)
	register(t, r, "b", "saved", beacon.HealthCritical)
	register(t, r, "c", "saved", beacon.HealthCritical)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	first, err := discovery.New(srv.Config(), discovery.WithSnapshotFile(path), discovery.WithPanicThreshold(0.5))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := first.Snapshot(ctx, "saved"); err != nil || !s.Panic || len(s.Instances) != 3 {
		t.Fatalf("Snapshot() = %+v, %v; want 3 instances in panic", s, err)
	}
	first.Close() // writes the file
	srv.Stop()

	second := newCache(t, srv.Config(), discovery.WithSnapshotFile(path), discovery.WithPanicThreshold(0.5))
	s, err := second.Snapshot(ctx, "saved")
	if err != nil {
		t.Fatalf("Snapshot() with Consul down and a saved file = %v", err)
	}
	if s.Source != discovery.SourceFile || !s.Panic || len(s.Instances) != 3 {
		t.Fatalf("Snapshot() = %+v; want the 3 saved instances from the file, in panic", s)
	}
	for _, e := range s.Set().Endpoints() {
		if e.Weight() != 1 {
			t.Errorf("saved panic snapshot: %s (%s) Weight() = %d, want 1", e.Instance.ID, e.Instance.Health, e.Weight())
		}
	}
}

// TestPanicAndFailover: failover counts passing instances, panic decides
// what a datacenter's snapshot holds, and the two do not fight. dc1 with 1
// of 3 passing (threshold 0.5, MinPassing 1) stays local, in panic; with
// none passing it fails over to dc2's passing instance; with none passing
// anywhere it serves dc1 again, in panic.
func TestPanicAndFailover(t *testing.T) {
	f, dc1, dc2 := federation(t)
	register(t, dc1, "web-3", "web", beacon.HealthCritical)
	register(t, dc1, "web-4", "web", beacon.HealthCritical)
	c := newCache(t, f.DC("dc1").Config(), discovery.WithPanicThreshold(0.5),
		discovery.WithFailover(discovery.Failover{Datacenters: []string{"dc2"}, HoldDown: time.Second}))
	w := watchWeb(t, c)
	inPanicAt := func(dc string, inPanic bool, want ...string) func(*discovery.Snapshot) bool {
		return func(s *discovery.Snapshot) bool { return served(dc, want...)(s) && s.Panic == inPanic }
	}
	until(t, w, "1 of 3 passing in dc1: local, in panic", inPanicAt("", true, "web-1", "web-3", "web-4"))
	if st := failoverStats(t, c); !st.Panic || st.Failovers != 0 || st.PanicThreshold != 0.5 || st.Panics != 1 {
		t.Errorf("failover Stats() in local panic = %+v, want Panic, no failover, threshold 0.5, Panics 1", st)
	}

	setHealth(t, dc1, "web-1", beacon.HealthCritical)
	until(t, w, "none passing in dc1: failed over to dc2, not in panic", inPanicAt("dc2", false, "web-2"))
	if st := failoverStats(t, c); st.Panic || st.Failovers != 1 {
		t.Errorf("failover Stats() in dc2 = %+v, want no panic, Failovers 1", st)
	}

	setHealth(t, dc2, "web-2", beacon.HealthCritical)
	until(t, w, "none passing anywhere: dc1 again, in panic", inPanicAt("", true, "web-1", "web-3", "web-4"))
}
