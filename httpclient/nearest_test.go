package httpclient_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/internal/testutil"
)

// at places a node ms milliseconds from the origin, in Consul's 8
// dimensions.
func at(ms float64) []float64 { return []float64{ms / 1000, 0, 0, 0, 0, 0, 0, 0} }

// nearEnv is one agent at the origin and three external nodes, near (2 ms
// away), mid (10 ms) and far (30 ms), each with an instance of "web"
// served by a backend of that name.
type nearEnv struct {
	srv   *consultest.Server
	cache *discovery.Cache
	rtts  *discovery.RTTWatcher // the test's own handle on the cache's coordinate watch
	bs    map[string]*backend
}

func newNearEnv(t *testing.T) *nearEnv {
	t.Helper()
	e := &nearEnv{srv: consultest.NewServer(t), bs: map[string]*backend{}}
	e.srv.SetCoordinate(t, e.srv.Name, at(0)...)
	for _, n := range []struct {
		name string
		ms   float64
	}{{"near", 2}, {"mid", 10}, {"far", 30}} {
		b := newBackend(t, n.name)
		e.bs[n.name] = b
		e.srv.RegisterExternal(t, "node-"+n.name, "127.0.0.1", consultest.ExternalInstance{ID: "web-" + n.name, Service: "web", Port: b.port})
		e.srv.SetCoordinate(t, "node-"+n.name, at(n.ms)...)
	}
	var err error
	e.cache, err = discovery.New(e.srv.Config(), discovery.WithRateLimit(10*time.Millisecond, 10), discovery.WithRTTRefresh(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cache.Close() })
	e.rtts, err = e.cache.WatchRTTs()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.rtts.Close)
	for node, ms := range map[string]time.Duration{"node-near": 2, "node-mid": 10, "node-far": 30} {
		e.waitRTT(t, node, func(d time.Duration) bool { return (d - ms*time.Millisecond).Abs() < time.Millisecond })
	}
	return e
}

// waitRTT waits until the cache's estimate for node satisfies ok.
func (e *nearEnv) waitRTT(t *testing.T, node string, ok func(time.Duration) bool) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		if d, known := e.rtts.RTTs().RTT(node); known && ok(d) {
			return
		}
		select {
		case <-e.rtts.Changed():
		case <-timeout:
			d, known := e.rtts.RTTs().RTT(node)
			t.Fatalf("RTT(%s) = %v, %v after %v (last error %v)", node, d, known, deadline, e.rtts.Err())
		}
	}
}

// callWeb sends n GETs to http://web/ and counts the backends that answered;
// every call must succeed.
func callWeb(t *testing.T, c *http.Client, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	got := map[string]int{}
	for range n {
		name, err := get(ctx, c, "http://web/")
		if err != nil {
			t.Fatalf("GET http://web/ = %v", err)
		}
		got[name]++
	}
	return got
}

// webBackend returns the backend the watch of "web" last heard from.
func webBackend(c *discovery.Cache) (beacon.QueryBackend, int) {
	for _, st := range c.Stats() {
		if st.Service == "web" {
			return st.Backend, st.Instances
		}
	}
	return "", 0
}

// TestNearestFirst is issue 14's acceptance for nearest nodes, on a real
// agent: with three nodes 2, 10 and 30 ms away, nearest-first sends at
// least 95 % of 1,000 calls to the nearest node's instance, while the
// health watch keeps the streaming backend (X-Consul-Query-Backend, as
// Stats reports it). Then the nearest instance dies, and calls go to the
// next nearest without one failing (retries, then ejection); then the
// far node's coordinate moves nearest, and calls follow it.
func TestNearestFirst(t *testing.T) {
	e := newNearEnv(t)
	tr := httpclient.New(e.cache, httpclient.WithNearest())
	t.Cleanup(func() { tr.Close() })
	c := &http.Client{Transport: tr}
	callWeb(t, c, 1) // starts the watch of web

	// Only a blocking query can be served by the streaming backend: a
	// change makes the watch answer from one.
	extra := newBackend(t, "farther")
	e.srv.RegisterExternal(t, "node-farther", "127.0.0.1", consultest.ExternalInstance{ID: "web-farther", Service: "web", Port: extra.port})
	e.srv.SetCoordinate(t, "node-farther", at(50)...)
	e.waitRTT(t, "node-farther", func(d time.Duration) bool { return d > 45*time.Millisecond })
	testutil.Eventually(t, deadline, "the watch of web with its fourth instance", func() error {
		_, n := webBackend(e.cache)
		return testutil.Want(n == 4, "Stats(web).Instances = %d, want 4", n)
	})

	const n = 1000
	got := callWeb(t, c, n)
	t.Logf("%d calls with nodes 2, 10, 30 and 50 ms away: %v", n, got)
	if got["near"] < n*95/100 {
		t.Errorf("the nearest instance served %d of %d calls, want at least 95 %%: %v", got["near"], n, got)
	}
	if b, _ := webBackend(e.cache); b != beacon.QueryBackendStreaming {
		t.Errorf("Stats(web).Backend = %q, want %q: the health watch must keep the streaming backend", b, beacon.QueryBackendStreaming)
	}

	// The nearest instance dies (Consul still lists it as passing): every
	// call still succeeds, on the next nearest.
	e.bs["near"].srv.Close()
	got = callWeb(t, c, 200)
	t.Logf("200 calls with the nearest instance down: %v", got)
	if got["mid"] != 200 {
		t.Errorf("with near down, mid served %d of 200 calls, want all: %v", got["mid"], got)
	}
	if ej := tr.Ejected("web"); len(ej) != 1 || ej[0].ID != "web-near" {
		t.Errorf("Ejected(web) = %v, want web-near", ej)
	}

	// far moves nearest (0.5 ms away): calls follow the coordinate.
	e.srv.SetCoordinate(t, "node-far", at(0.5)...)
	e.waitRTT(t, "node-far", func(d time.Duration) bool { return d < time.Millisecond })
	got = callWeb(t, c, 200)
	t.Logf("200 calls after far moved to 0.5 ms: %v", got)
	if got["far"] != 200 {
		t.Errorf("after its coordinate moved nearest, far served %d of 200 calls, want all: %v", got["far"], got)
	}
}

// TestNearestWithoutRTTs: without estimates (coordinates disabled on the
// agent), nearest-first picks every instance as the inner balancer does.
func TestNearestWithoutRTTs(t *testing.T) {
	srv := consultest.NewServer(t, consultest.WithConfigJSON(`{"disable_coordinates": true}`))
	bs := map[string]*backend{}
	for _, name := range []string{"a", "b"} {
		bs[name] = newBackend(t, name)
		srv.RegisterExternal(t, "node-"+name, "127.0.0.1", consultest.ExternalInstance{ID: "web-" + name, Service: "web", Port: bs[name].port})
	}
	cache, err := discovery.New(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	tr := httpclient.New(cache, httpclient.WithNearest())
	t.Cleanup(func() { tr.Close() })
	got := callWeb(t, &http.Client{Transport: tr}, 100)
	if got["a"] != 50 || got["b"] != 50 {
		t.Errorf("calls without RTTs = %v, want 50 each (round robin)", got)
	}
}
