// Package prommetrics exposes a discovery cache's measurements to
// Prometheus: it implements discovery.Metrics (counters fed by the watch
// loops) and prometheus.Collector (gauges read from Cache.Stats at scrape
// time).
//
//	m := prommetrics.New()
//	cache, _ := discovery.New(cfg, discovery.WithMetrics(m))
//	m.Observe(cache)
//	prometheus.MustRegister(m)
//
// Every family is named beacon_discovery_* and follows Prometheus' naming
// rules: counters end in _total, durations are in seconds. A test lints
// them all with client_golang's promlint (testutil.CollectAndLint).
package prommetrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/beaconsd/beacon/discovery"
)

// Collector is both the cache's Metrics sink and a Prometheus collector.
type Collector struct {
	requests, errors, resets, published, aclHidden, staleViews *prometheus.CounterVec
	failovers, panics                                          *prometheus.CounterVec

	age, instances, stale, backend, failedOver, panicking *prometheus.Desc
	hot, hotSpells, rateLimited, rateLimitWait            *prometheus.Desc
	capRequests, capDelayed, capWait                      *prometheus.Desc
	readPath                                              *prometheus.Desc
	cache                                                 atomic.Pointer[discovery.Cache]
}

var (
	_ discovery.Metrics          = (*Collector)(nil)
	_ discovery.StaleViewCounter = (*Collector)(nil)
	_ discovery.FailoverObserver = (*Collector)(nil)
	_ discovery.PanicObserver    = (*Collector)(nil)
	_ prometheus.Collector       = (*Collector)(nil)
)

// New returns a collector with metrics named beacon_discovery_*.
func New() *Collector {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "beacon", Subsystem: "discovery", Name: name, Help: help}, []string{"service"})
	}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("beacon", "discovery", name), help, []string{"service"}, nil)
	}
	return &Collector{
		requests:   counter("requests_total", "Queries sent to Consul."),
		errors:     counter("watch_errors_total", "Failed queries; the last good snapshot was kept."),
		resets:     counter("index_resets_total", "Consul indexes that went backwards (an agent's state was reset)."),
		published:  counter("snapshots_total", "Snapshots published after a change."),
		aclHidden:  counter("acl_hidden_total", "Empty answers not believed because ACLs hide the service from the client's token; the last good snapshot was kept."),
		staleViews: counter("stale_views_total", "Stale streaming views (Consul < 1.16, hashicorp/consul#16871) a watch was found serving and repaired with a plain read."),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "beacon", Subsystem: "discovery", Name: "failovers_total",
			Help: "Moves of a failover watch off the local datacenter, by the datacenter it moved to."}, []string{"service", "datacenter"}),
		failedOver: prometheus.NewDesc(prometheus.BuildFQName("beacon", "discovery", "failed_over"),
			"1 while a failover watch serves another datacenter than the local one, labelled with that datacenter.", []string{"service", "datacenter"}, nil),
		panics:        counter("panics_total", "Times a watch with a panic threshold entered panic: too few instances passed, so every one not in maintenance was published."),
		panicking:     desc("panic", "For a watch with a panic threshold: 1 while it publishes in panic (every instance not in maintenance, whatever its health), else 0."),
		age:           desc("snapshot_age_seconds", "Seconds since Consul last answered the watch."),
		instances:     desc("instances", "Instances in the current snapshot."),
		stale:         desc("stale", "1 while the snapshot is served despite an error."),
		hot:           desc("hot", "1 while the watch's index moves faster than WithHotThreshold follows and the watch polls at its ceiling (WithRateLimit), else 0."),
		hotSpells:     desc("hot_spells_total", "Times the watch became hot (WatchStats.HotSpells)."),
		rateLimited:   desc("rate_limited_total", "Queries of the watch that waited on its ceiling (WatchStats.RateLimited)."),
		rateLimitWait: desc("rate_limit_wait_seconds_total", "Seconds the watch's queries waited on its ceiling, in all (WatchStats.RateLimitWait)."),
		capRequests: prometheus.NewDesc(prometheus.BuildFQName("beacon", "discovery", "request_cap_requests_total"),
			"Requests that passed the cache-wide cap (WithMaxRequestRate); absent without a cap.", nil, nil),
		capDelayed: prometheus.NewDesc(prometheus.BuildFQName("beacon", "discovery", "request_cap_delayed_total"),
			"Requests that waited for the cache-wide cap (WithMaxRequestRate).", nil, nil),
		capWait: prometheus.NewDesc(prometheus.BuildFQName("beacon", "discovery", "request_cap_wait_seconds_total"),
			"Seconds requests waited for the cache-wide cap, in all.", nil, nil),
		backend: prometheus.NewDesc(prometheus.BuildFQName("beacon", "discovery", "query_backend"),
			"1 for the agent backend that served the watch's last answer (X-Consul-Query-Backend: streaming or blocking-query).", []string{"service", "backend"}, nil),
		readPath: prometheus.NewDesc(prometheus.BuildFQName("beacon", "discovery", "read_path"),
			"1 for the read path the watch's last query took (streaming, blocking or cached: discovery.WithReadPath, BEACON_READ_PATH); agent_cache is the answer's X-Cache (HIT, MISS, or empty when not a ?cached answer).", []string{"service", "path", "agent_cache"}, nil),
	}
}

// Observe makes the collector report cache's watches at scrape time.
func (c *Collector) Observe(cache *discovery.Cache) { c.cache.Store(cache) }

// Request implements discovery.Metrics.
func (c *Collector) Request(service string) { c.requests.WithLabelValues(service).Inc() }

// WatchError implements discovery.Metrics.
func (c *Collector) WatchError(service string) { c.errors.WithLabelValues(service).Inc() }

// IndexReset implements discovery.Metrics.
func (c *Collector) IndexReset(service string) { c.resets.WithLabelValues(service).Inc() }

// Published implements discovery.Metrics.
func (c *Collector) Published(service string, _ int) { c.published.WithLabelValues(service).Inc() }

// ACLHidden implements discovery.Metrics.
func (c *Collector) ACLHidden(service string) { c.aclHidden.WithLabelValues(service).Inc() }

// StaleView implements discovery.StaleViewCounter.
func (c *Collector) StaleView(service string) { c.staleViews.WithLabelValues(service).Inc() }

// FailedOver implements discovery.FailoverObserver.
func (c *Collector) FailedOver(service, dc string) {
	if dc != "" {
		c.failovers.WithLabelValues(service, dc).Inc()
	}
}

// Panic implements discovery.PanicObserver.
func (c *Collector) Panic(service string, on bool) {
	if on {
		c.panics.WithLabelValues(service).Inc()
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.requests.Describe(ch)
	c.errors.Describe(ch)
	c.resets.Describe(ch)
	c.published.Describe(ch)
	c.aclHidden.Describe(ch)
	c.staleViews.Describe(ch)
	c.failovers.Describe(ch)
	c.panics.Describe(ch)
	ch <- c.failedOver
	ch <- c.panicking
	ch <- c.age
	ch <- c.instances
	ch <- c.stale
	ch <- c.backend
	ch <- c.hot
	ch <- c.hotSpells
	ch <- c.rateLimited
	ch <- c.rateLimitWait
	ch <- c.capRequests
	ch <- c.capDelayed
	ch <- c.capWait
	ch <- c.readPath
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.requests.Collect(ch)
	c.errors.Collect(ch)
	c.resets.Collect(ch)
	c.published.Collect(ch)
	c.aclHidden.Collect(ch)
	c.staleViews.Collect(ch)
	c.failovers.Collect(ch)
	c.panics.Collect(ch)
	cache := c.cache.Load()
	if cache == nil {
		return
	}
	if rc := cache.RequestCap(); rc.PerSecond > 0 {
		ch <- prometheus.MustNewConstMetric(c.capRequests, prometheus.CounterValue, float64(rc.Requests))
		ch <- prometheus.MustNewConstMetric(c.capDelayed, prometheus.CounterValue, float64(rc.Delayed))
		ch <- prometheus.MustNewConstMetric(c.capWait, prometheus.CounterValue, rc.Waited.Seconds())
	}
	seen, panicSeen := map[string]bool{}, map[string]bool{}
	for _, st := range cache.Stats() {
		if st.PreparedQuery != "" {
			continue // its service's own watch has the series
		}
		// The panic gauge comes from the first watch with a threshold,
		// which need not be the service's first watch.
		if st.PanicThreshold > 0 && !panicSeen[st.Service] {
			panicSeen[st.Service] = true
			inPanic := 0.0
			if st.Panic {
				inPanic = 1
			}
			ch <- prometheus.MustNewConstMetric(c.panicking, prometheus.GaugeValue, inPanic, st.Service)
		}
		if seen[st.Service] {
			continue // one series per service, from its first watch (a failover watch comes first)
		}
		seen[st.Service] = true
		stale := 0.0
		if st.Err != nil {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, st.Age.Seconds(), st.Service)
		ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(st.Instances), st.Service)
		ch <- prometheus.MustNewConstMetric(c.stale, prometheus.GaugeValue, stale, st.Service)
		hot := 0.0
		if st.Hot {
			hot = 1
		}
		ch <- prometheus.MustNewConstMetric(c.hot, prometheus.GaugeValue, hot, st.Service)
		ch <- prometheus.MustNewConstMetric(c.hotSpells, prometheus.CounterValue, float64(st.HotSpells), st.Service)
		ch <- prometheus.MustNewConstMetric(c.rateLimited, prometheus.CounterValue, float64(st.RateLimited), st.Service)
		ch <- prometheus.MustNewConstMetric(c.rateLimitWait, prometheus.CounterValue, st.RateLimitWait.Seconds(), st.Service)
		if st.Failover && st.Datacenter != "" {
			ch <- prometheus.MustNewConstMetric(c.failedOver, prometheus.GaugeValue, 1, st.Service, st.Datacenter)
		}
		if st.Backend != "" {
			ch <- prometheus.MustNewConstMetric(c.backend, prometheus.GaugeValue, 1, st.Service, string(st.Backend))
		}
		ch <- prometheus.MustNewConstMetric(c.readPath, prometheus.GaugeValue, 1, st.Service, st.ReadPath.String(), st.AgentCache)
	}
}
