package prommetrics_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/prommetrics"
)

// families is every metric family the collector describes. A family added
// to Describe and missing here fails TestCollectAndLint, so no family goes
// unlinted; the README's metrics table lists the same names.
var families = []string{
	"beacon_discovery_acl_hidden_total",
	"beacon_discovery_failed_over",
	"beacon_discovery_failovers_total",
	"beacon_discovery_hot",
	"beacon_discovery_hot_spells_total",
	"beacon_discovery_index_resets_total",
	"beacon_discovery_instances",
	"beacon_discovery_panic",
	"beacon_discovery_panics_total",
	"beacon_discovery_query_backend",
	"beacon_discovery_rate_limit_wait_seconds_total",
	"beacon_discovery_rate_limited_total",
	"beacon_discovery_read_path",
	"beacon_discovery_request_cap_delayed_total",
	"beacon_discovery_request_cap_requests_total",
	"beacon_discovery_request_cap_wait_seconds_total",
	"beacon_discovery_requests_total",
	"beacon_discovery_snapshot_age_seconds",
	"beacon_discovery_snapshots_total",
	"beacon_discovery_stale",
	"beacon_discovery_stale_views_total",
	"beacon_discovery_watch_errors_total",
}

// describedNames returns the names of the families c describes. Desc
// exposes its name only through String, hence the pattern.
func describedNames(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range ch {
		if m := re.FindStringSubmatch(d.String()); m != nil {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func gatheredNames(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather() = %v", err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	slices.Sort(names)
	return names
}

// minus returns the names of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, n := range a {
		if !slices.Contains(b, n) {
			out = append(out, n)
		}
	}
	return out
}

func lintRegistry(t *testing.T, cfg consul.Config) *consulhttp.Client {
	t.Helper()
	r, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func lintRegister(t *testing.T, r beacon.Registry, id, service string, port int, h beacon.Health) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Register(ctx, beacon.Registration{ID: id, Service: service, Address: "127.0.0.1", Port: port,
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: h}}}); err != nil {
		t.Fatalf("Register(%q) = %v", id, err)
	}
}

func lintWatch(t *testing.T, c *discovery.Cache, q beacon.Query, opts ...discovery.WatchOption) *discovery.Watcher {
	t.Helper()
	w, err := c.Watch(q, opts...)
	if err != nil {
		t.Fatalf("Watch(%+v) = %v", q, err)
	}
	t.Cleanup(w.Close)
	return w
}

// waitFor waits on w's changes until cond holds of its snapshot.
func waitFor(t *testing.T, w *discovery.Watcher, what string, cond func(*discovery.Snapshot) bool) {
	t.Helper()
	end := time.After(60 * time.Second)
	for {
		if s := w.Snapshot(); s != nil && cond(s) {
			return
		}
		select {
		case <-w.Changed():
		case <-end:
			t.Fatalf("%s: not within 60s (last snapshot %+v)", what, w.Snapshot())
		}
	}
}

// TestCollectAndLint builds the collector against real caches whose watches
// make every family appear, asserts that the families gathered are exactly
// those described (and listed in families), and runs client_golang's
// linter over them. A family that emits nothing is not linted, hence the
// setup:
//
//   - dc1 and dc2, federated: "web" has a failover policy and only dc2
//     passes (failovers_total, failed_over); "fragile" has a panic
//     threshold and 1 of 3 passing (panic, panics_total); "lost" names a
//     datacenter that does not exist (watch_errors_total); the cache has a
//     request cap (request_cap_*); every watch gives the per-watch gauges;
//   - an ACL agent, where a second cache feeding the same collector reads
//     "secret" with a token that may not (acl_hidden_total).
//
// Two counters are driven by calling the sink, as the watch loop would: a
// stale streaming view (stale_views_total) needs a Consul bug's race
// (discovery's fault tests drive it), and an index going backwards
// (index_resets_total) an agent losing its state under a watch.
func TestCollectAndLint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := consultest.NewFederation(t, consultest.FederationSpec{Datacenters: []consultest.DatacenterSpec{
		{Name: "dc1", Servers: 1}, {Name: "dc2", Servers: 1},
	}})
	dc1 := lintRegistry(t, f.DC("dc1").Config())
	dc2 := lintRegistry(t, f.DC("dc2").Config())
	lintRegister(t, dc1, "web-1", "web", 9301, beacon.HealthCritical)
	lintRegister(t, dc2, "web-2", "web", 9302, beacon.HealthPassing)
	for i, h := range []beacon.Health{beacon.HealthPassing, beacon.HealthCritical, beacon.HealthCritical} {
		lintRegister(t, dc1, "fragile-"+string(rune('a'+i)), "fragile", 9310+i, h)
	}

	m := prommetrics.New()
	cache, err := discovery.New(f.DC("dc1").Config(), discovery.WithMetrics(m), discovery.WithMaxRequestRate(100, 20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	m.Observe(cache)

	web := lintWatch(t, cache, beacon.Query{Service: "web"}, discovery.FailOver(discovery.Failover{Datacenters: []string{"dc2"}}))
	fragile := lintWatch(t, cache, beacon.Query{Service: "fragile"}, discovery.PanicThreshold(0.5))
	lost := lintWatch(t, cache, beacon.Query{Service: "lost", Datacenter: "dc9"})
	waitFor(t, web, "web failed over to dc2", func(s *discovery.Snapshot) bool { return s.FailedOver && s.Datacenter == "dc2" })
	waitFor(t, fragile, "fragile in panic", func(s *discovery.Snapshot) bool { return s.Panic })
	if _, err := lost.Wait(ctx); err == nil {
		t.Fatal(`Wait() on "lost" in dc9 = nil error, want Consul's "no path to datacenter"`)
	}

	acl := consultest.NewServer(t, consultest.WithACL())
	admin := acl.Config()
	admin.Token = acl.ManagementToken()
	lintRegister(t, lintRegistry(t, admin), "secret-1", "secret", 9320, beacon.HealthPassing)
	reader := acl.Config()
	reader.Token = acl.MintToken(t, `service "other" { policy = "read" } node_prefix "" { policy = "read" }`)
	aclCache, err := discovery.New(reader, discovery.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = aclCache.Close() })
	if _, err := lintWatch(t, aclCache, beacon.Query{Service: "secret"}).Wait(ctx); !errors.Is(err, discovery.ErrHiddenByACLs) {
		t.Fatalf(`Wait() on "secret" = %v, want ErrHiddenByACLs`, err)
	}

	m.StaleView("web")
	m.IndexReset("web")

	if got := describedNames(m); !slices.Equal(got, families) {
		t.Errorf("Describe() names differ from families: missing %q, extra %q (list a new family in families and in the README's table)",
			minus(families, got), minus(got, families))
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	if got := gatheredNames(t, reg); !slices.Equal(got, families) {
		t.Errorf("gathered families differ from families: missing %q, extra %q (the setup must make every family present, or it goes unlinted)",
			minus(families, got), minus(got, families))
	}
	problems, err := testutil.CollectAndLint(m)
	if err != nil {
		t.Fatalf("CollectAndLint() error = %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	// What sayhello serves on /metrics: the collector beside client_golang's
	// Go and process collectors.
	served := prometheus.NewPedanticRegistry()
	served.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	problems, err = testutil.GatherAndLint(served)
	if err != nil {
		t.Fatalf("GatherAndLint(sayhello's registry) error = %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint of sayhello's registry: %s: %s", p.Metric, p.Text)
	}
}
