package prommetrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/prommetrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// value returns the gathered value of name{service=svc}, or -1.
func value(t *testing.T, reg *prometheus.Registry, name, svc string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "service" && l.GetValue() == svc {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

func TestCollector(t *testing.T) {
	srv := consultest.NewServer(t)
	r, _ := consulhttp.New(srv.Config())
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Register(ctx, beacon.Registration{ID: "m1", Service: "metered", Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}}}); err != nil {
		t.Fatal(err)
	}
	m := prommetrics.New()
	cache, err := discovery.New(srv.Config(), discovery.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	m.Observe(cache)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	if _, err := cache.Instances(ctx, "metered"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"beacon_discovery_instances":       1,
		"beacon_discovery_stale":           0,
		"beacon_discovery_snapshots_total": 1,
	} {
		if got := value(t, reg, name, "metered"); got != want {
			t.Errorf("%s{service=metered} = %v, want %v", name, got, want)
		}
	}
	if got := value(t, reg, "beacon_discovery_requests_total", "metered"); got < 1 {
		t.Errorf("requests_total = %v, want at least 1", got)
	}
	// The first answer is a plain read: the agent names its backend.
	if got := value(t, reg, "beacon_discovery_query_backend", "metered"); got != 1 {
		t.Errorf("query_backend{service=metered} = %v, want 1", got)
	}
	m.StaleView("metered") // the guard's call, as discovery's fault tests drive it
	if got := value(t, reg, "beacon_discovery_stale_views_total", "metered"); got != 1 {
		t.Errorf("stale_views_total{service=metered} = %v, want 1", got)
	}

	srv.Stop()
	end := time.Now().Add(30 * time.Second)
	for value(t, reg, "beacon_discovery_stale", "metered") != 1 {
		if time.Now().After(end) {
			t.Fatal("stale gauge never became 1 after the agent stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := value(t, reg, "beacon_discovery_watch_errors_total", "metered"); got < 1 {
		t.Errorf("watch_errors_total = %v, want at least 1", got)
	}
	if got := value(t, reg, "beacon_discovery_instances", "metered"); got != 1 {
		t.Errorf("instances during the outage = %v, want the last good 1", got)
	}
}

// TestPanicMetrics: beacon_discovery_panic is 1 while a watch with a
// panic threshold publishes in panic, 0 after; panics_total counts entries.
func TestPanicMetrics(t *testing.T) {
	srv := consultest.NewServer(t)
	r, _ := consulhttp.New(srv.Config())
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, h := range []beacon.Health{beacon.HealthPassing, beacon.HealthCritical, beacon.HealthCritical} {
		id := fmt.Sprintf("p%d", i)
		if err := r.Register(ctx, beacon.Registration{ID: id, Service: "fragile", Address: "127.0.0.1", Port: 9100 + i,
			Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: h}}}); err != nil {
			t.Fatal(err)
		}
	}
	m := prommetrics.New()
	cache, err := discovery.New(srv.Config(), discovery.WithMetrics(m), discovery.WithPanicThreshold(0.5))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	m.Observe(cache)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	if s, err := cache.Snapshot(ctx, "fragile"); err != nil || !s.Panic {
		t.Fatalf("Snapshot() = %+v, %v; want one in panic", s, err)
	}
	for name, want := range map[string]float64{"beacon_discovery_panic": 1, "beacon_discovery_panics_total": 1, "beacon_discovery_instances": 3} {
		if got := value(t, reg, name, "fragile"); got != want {
			t.Errorf("in panic, %s{service=fragile} = %v, want %v", name, got, want)
		}
	}
	// A watch of the same service without a threshold, which Stats may
	// list first: the gauge still comes from the one with a threshold.
	plain, err := cache.Watch(beacon.Query{Service: "fragile"}, discovery.PanicThreshold(0))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for range 20 { // Stats' order between the two is Go's map order
		if got := value(t, reg, "beacon_discovery_panic", "fragile"); got != 1 {
			t.Fatalf("beside a watch without a threshold, beacon_discovery_panic{service=fragile} = %v, want 1", got)
		}
	}
	if err := r.UpdateTTL(ctx, "service:p1", beacon.HealthPassing, ""); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(30 * time.Second)
	for value(t, reg, "beacon_discovery_panic", "fragile") != 0 {
		if time.Now().After(end) {
			t.Fatal("panic gauge never went back to 0 with 2 of 3 passing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := value(t, reg, "beacon_discovery_panics_total", "fragile"); got != 1 {
		t.Errorf("panics_total after leaving panic = %v, want 1", got)
	}
}

// unlabelled returns the gathered value of a metric without labels, or -1.
func unlabelled(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// TestPacingMetrics: a watch whose every query waits on its ceiling (the
// hot threshold off) counts them in rate_limited_total, and a cache-wide
// cap of 20 requests a second after 1 counts the requests it delayed (the
// watch, the change feed and the stale guard start at once).
func TestPacingMetrics(t *testing.T) {
	srv := consultest.NewServer(t)
	r, _ := consulhttp.New(srv.Config())
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	register := func(id string) {
		if err := r.Register(ctx, beacon.Registration{ID: id, Service: "paced", Address: "127.0.0.1", Port: 9200 + len(id),
			Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}}}); err != nil {
			t.Fatal(err)
		}
	}
	register("q1")
	m := prommetrics.New()
	cache, err := discovery.New(srv.Config(), discovery.WithMetrics(m), discovery.WithHotThreshold(0, 0),
		discovery.WithRateLimit(time.Second, 1), discovery.WithMaxRequestRate(20, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	m.Observe(cache)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	if _, err := cache.Instances(ctx, "paced"); err != nil {
		t.Fatal(err)
	}
	register("q22") // wakes the blocking query; the next waits on both limits
	end := time.Now().Add(30 * time.Second)
	for value(t, reg, "beacon_discovery_rate_limited_total", "paced") < 1 || unlabelled(t, reg, "beacon_discovery_request_cap_delayed_total") < 1 {
		if time.Now().After(end) {
			t.Fatalf("rate_limited_total = %v, request_cap_delayed_total = %v; want both at least 1",
				value(t, reg, "beacon_discovery_rate_limited_total", "paced"), unlabelled(t, reg, "beacon_discovery_request_cap_delayed_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := value(t, reg, "beacon_discovery_hot", "paced"); got != 0 {
		t.Errorf("hot{service=paced} = %v, want 0 (the hot threshold is off)", got)
	}
	if got := unlabelled(t, reg, "beacon_discovery_request_cap_wait_seconds_total"); got <= 0 {
		t.Errorf("request_cap_wait_seconds_total = %v, want more than 0", got)
	}
}
