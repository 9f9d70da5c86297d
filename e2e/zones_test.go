package e2e_test

import (
	"context"
	"fmt"
	"io"
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

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/internal/testutil"
)

// The acceptance of zone-aware picking (issue 14) on a real cluster: one
// server and two client agents, with node_meta zone=a and zone=b. Every
// instance is an HTTP server counting its own requests, registered through
// the agent of its zone with no zone of its own: its zone is its node's
// meta, as Consul reports it. Every caller has its own discovery cache and
// Transport, through the agent of its zone.

// zoneCluster is the cluster and a registry per zone's agent.
type zoneCluster struct {
	c     *consultest.Cluster
	agent map[string]*consultest.Node
	reg   map[string]*consulhttp.Client
}

func newZoneCluster(t *testing.T) *zoneCluster {
	t.Helper()
	testutil.StressIfAsked(t, 5*time.Minute)
	c := consultest.NewCluster(t, 1, 2, consultest.WithClientNodeMeta(
		map[string]string{"zone": "a"}, map[string]string{"zone": "b"}))
	zc := &zoneCluster{c: c, agent: map[string]*consultest.Node{"a": c.Clients[0], "b": c.Clients[1]}, reg: map[string]*consulhttp.Client{}}
	for z, n := range zc.agent {
		reg, err := consulhttp.New(c.Config(n))
		if err != nil {
			t.Fatalf("consulhttp.New(%s) = %v", n.Name, err)
		}
		t.Cleanup(func() { reg.Close() })
		zc.reg[z] = reg
	}
	return zc
}

// counted is one instance: an HTTP server counting what it serves.
type counted struct {
	id, zone string
	hits     atomic.Int64
	srv      *httptest.Server
}

// serve starts n instances of service in zone, registered through the
// zone's agent, and returns them.
func (zc *zoneCluster) serve(t *testing.T, service, zone string, n int) []*counted {
	t.Helper()
	var out []*counted
	for i := range n {
		in := &counted{id: fmt.Sprintf("%s-%s%d", service, zone, i+1), zone: zone}
		in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			in.hits.Add(1)
			io.WriteString(w, in.id)
		}))
		t.Cleanup(in.srv.Close)
		u, _ := url.Parse(in.srv.URL)
		port, _ := strconv.Atoi(u.Port())
		zc.register(t, zone, beacon.Registration{ID: in.id, Service: service, Address: u.Hostname(), Port: port})
		out = append(out, in)
	}
	return out
}

// register registers r, without checks (so passing at once), through the
// agent of zone.
func (zc *zoneCluster) register(t *testing.T, zone string, r beacon.Registration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := zc.reg[zone].Register(ctx, r); err != nil {
		t.Fatalf("Register(%q) through the agent of zone %s = %v", r.ID, zone, err)
	}
}

// caller returns an http.Client whose Transport picks zone-aware for a
// caller in zone, through a cache of its own on the zone's agent.
func (zc *zoneCluster) caller(t *testing.T, zone string, opts ...httpclient.Option) (*http.Client, *discovery.Cache) {
	t.Helper()
	cache, err := discovery.New(zc.c.Config(zc.agent[zone]))
	if err != nil {
		t.Fatalf("discovery.New() = %v", err)
	}
	t.Cleanup(func() { cache.Close() })
	tr := httpclient.New(cache, append([]httpclient.Option{httpclient.WithZone(zone)}, opts...)...)
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: deadline}, cache
}

// waitZones waits until cache sees service's passing instances spread over
// zones as want (zone → count), zones read from node meta.
func waitZones(t *testing.T, cache *discovery.Cache, service string, want map[string]int) {
	t.Helper()
	w, err := cache.Watch(beacon.Query{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		got := map[string]int{}
		if s := w.Snapshot(); s != nil {
			for _, in := range s.Instances {
				got[in.Zone("")]++
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		select {
		case <-w.Changed():
		case <-timer.C:
			t.Fatalf("instances of %s by zone = %v, want %v within %v", service, got, want, deadline)
		}
	}
}

// get calls http://service/ once.
func get(client *http.Client, service string) error {
	resp, err := client.Get("http://" + service + "/")
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return err
}

// byZone sums hits by zone.
func byZone(insts []*counted) map[string]int64 {
	m := map[string]int64{}
	for _, in := range insts {
		m[in.zone] += in.hits.Load()
	}
	return m
}

func describe(insts []*counted) string {
	var parts []string
	for _, in := range insts {
		parts = append(parts, fmt.Sprintf("%s %d", in.id, in.hits.Load()))
	}
	return strings.Join(parts, ", ")
}

// TestZonesPreferLocal: a caller in zone a, instances a:2, b:2: at least
// 95% of 1,000 calls go to zone a (with no spread of callers known, all of
// them should).
func TestZonesPreferLocal(t *testing.T) {
	zc := newZoneCluster(t)
	insts := append(zc.serve(t, "zweb", "a", 2), zc.serve(t, "zweb", "b", 2)...)
	client, cache := zc.caller(t, "a")
	waitZones(t, cache, "zweb", map[string]int{"a": 2, "b": 2})
	const calls = 1000
	for i := range calls {
		if err := get(client, "zweb"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	z := byZone(insts)
	t.Logf("%d calls from zone a: zone a %d (%.1f%%), zone b %d; %s", calls, z["a"], 100*float64(z["a"])/calls, z["b"], describe(insts))
	if z["a"] < calls*95/100 {
		t.Errorf("zone a served %d of %d calls from zone a, want at least 95%%", z["a"], calls)
	}
}

// TestZonesSpreadByCallers: instances a:1, b:3, four callers (two in each
// zone) that learn their spread from their own service in Consul: no
// instance gets more than 1.3 times its fair share. Without zone-awareness
// of the spread, the callers of zone a would send all their calls to a's
// one instance: 2,000 of 4,000, twice its share.
func TestZonesSpreadByCallers(t *testing.T) {
	zc := newZoneCluster(t)
	insts := append(zc.serve(t, "zweb", "a", 1), zc.serve(t, "zweb", "b", 3)...)
	// The callers' own service: two instances through each zone's agent.
	for i, z := range []string{"a", "a", "b", "b"} {
		zc.register(t, z, beacon.Registration{ID: fmt.Sprintf("zcaller-%d", i+1), Service: "zcallers", Address: "127.0.0.1", Port: 1 + i})
	}
	var clients []*http.Client
	for _, z := range []string{"a", "a", "b", "b"} {
		client, cache := zc.caller(t, z, httpclient.WithZoneCallers("zcallers"))
		waitZones(t, cache, "zweb", map[string]int{"a": 1, "b": 3})
		waitZones(t, cache, "zcallers", map[string]int{"a": 2, "b": 2})
		clients = append(clients, client)
	}
	const perCaller = 1000
	errs := make(chan error, len(clients))
	var wg sync.WaitGroup
	for _, client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perCaller {
				if err := get(client, "zweb"); err != nil {
					errs <- fmt.Errorf("call %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := int64(perCaller * len(clients))
	fair := float64(total) / float64(len(insts))
	var shares []string
	worst := 0.0
	for _, in := range insts {
		r := float64(in.hits.Load()) / fair
		worst = max(worst, r)
		shares = append(shares, fmt.Sprintf("%s %.2f", in.id, r))
	}
	t.Logf("%d calls from callers a:2 b:2 to instances a:1 b:3, share of fair per instance: %s; worst %.2f×", total, strings.Join(shares, ", "), worst)
	if worst > 1.3 {
		t.Errorf("an instance got %.2f× its fair share (%s), want at most 1.3×", worst, describe(insts))
	}
}

// TestZonesSpillWhenLocalStops: a caller in zone a calls instances a:2,
// b:2 while zone a's instances stop; the calls spill to zone b and none
// fails, retries on (the default). "crash": the servers close first, and
// their registrations go after; "graceful": the other way round.
func TestZonesSpillWhenLocalStops(t *testing.T) {
	for _, order := range []string{"crash", "graceful"} {
		t.Run(order, func(t *testing.T) {
			zc := newZoneCluster(t)
			a := zc.serve(t, "zweb", "a", 2)
			b := zc.serve(t, "zweb", "b", 2)
			client, cache := zc.caller(t, "a")
			waitZones(t, cache, "zweb", map[string]int{"a": 2, "b": 2})

			// Four goroutines call until told to stop, at most 50,000 calls
			// each (a bound, never reached in a passing run).
			var calls, failed atomic.Int64
			var firstErr atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 50000 {
						select {
						case <-stop:
							return
						default:
						}
						calls.Add(1)
						if err := get(client, "zweb"); err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}
				}()
			}
			stopCalls := sync.OnceFunc(func() { close(stop); wg.Wait() })
			t.Cleanup(stopCalls)
			waitCalls := func(n int64) {
				t.Helper()
				testutil.Eventually(t, deadline, "calls made", func() error {
					return testutil.Want(calls.Load() >= n, "%d calls so far, want %d", calls.Load(), n)
				})
			}

			waitCalls(200)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			deregister := func() {
				for _, in := range a {
					if err := zc.reg["a"].Deregister(ctx, in.id); err != nil {
						t.Fatalf("Deregister(%q) = %v", in.id, err)
					}
				}
			}
			if order == "graceful" {
				deregister()
			}
			for _, in := range a {
				in.srv.Close()
			}
			if order == "crash" {
				deregister()
			}
			beforeB := byZone(b)["b"]
			stoppedAt := calls.Load()
			waitZones(t, cache, "zweb", map[string]int{"b": 2})
			waitCalls(calls.Load() + 400)
			stopCalls()

			t.Logf("%s: %d calls, %d failed; zone a served %d (all before it stopped), zone b %d, %d of them after; stopped after call %d",
				order, calls.Load(), failed.Load(), byZone(a)["a"], byZone(b)["b"], byZone(b)["b"]-beforeB, stoppedAt)
			if failed.Load() != 0 {
				t.Errorf("%d of %d calls failed, want 0 (first: %v)", failed.Load(), calls.Load(), firstErr.Load())
			}
			if after := byZone(b)["b"] - beforeB; after < 400 {
				t.Errorf("zone b served %d calls after zone a stopped, want at least 400", after)
			}
			if got := byZone(a)["a"]; got < 150 {
				t.Errorf("zone a served %d calls before it stopped, want most of the first 200", got)
			}
			if slices.ContainsFunc(a, func(in *counted) bool { return in.hits.Load() == 0 }) {
				t.Errorf("an instance of zone a was never called: %s", describe(a))
			}
		})
	}
}
