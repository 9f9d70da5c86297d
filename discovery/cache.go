package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/internal/blocking"
	"github.com/beaconsd/beacon/internal/lru"
	"github.com/beaconsd/beacon/internal/notify"
)

// NoPassingPolicy says what a watch publishes when no instance passes.
type NoPassingPolicy int

const (
	// ReturnNone publishes no instances (the default).
	ReturnNone NoPassingPolicy = iota
	// FallBackToWarning publishes the warning instances when none passes.
	FallBackToWarning
)

type options struct {
	backend      consul.Backend
	logger       *slog.Logger
	wait         time.Duration
	every        time.Duration
	burst        int
	hotEvery     time.Duration // WithHotThreshold
	hotBurst     int
	maxRate      float64 // WithMaxRequestRate; 0: no cap
	maxBurst     int
	maxPolls     int
	probe        time.Duration
	noPassing    NoPassingPolicy
	consistency  beacon.Consistency
	maxPinned    int
	metrics      Metrics
	snapshotFile string
	cached       bool
	staleBound   time.Duration
	failover     Failover
	queryPoll    time.Duration
	addrPolicy   beacon.AddressPolicy
	rttEvery     time.Duration // the coordinate watch's spacing (rtt.go)
	panic        float64       // WithPanicThreshold (panic.go)
	readPath     ReadPath      // WithReadPath (readpath.go)
	pathFile     string        // WithReadPathFile
	pathEvery    time.Duration
}

// Option adjusts a Cache.
type Option func(*options)

// WithBackend chooses the Consul client (default consulhttp).
func WithBackend(b consul.Backend) Option { return func(o *options) { o.backend = b } }

// WithLogger sets where watch errors and agent changes are logged (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithWaitTime sets each blocking query's wait (default 5 min, at most 10).
func WithWaitTime(d time.Duration) Option { return func(o *options) { o.wait = d } }

// WithRateLimit is each watch's ceiling: a watch whose index moves faster
// than WithHotThreshold allows degrades to polling, a burst and then one
// query per every (default burst 2, then one a second), until its index
// stands still again (see WithHotThreshold). With WithHotThreshold(0, 0)
// every query of a watch waits on it, as before issue 15.
func WithRateLimit(every time.Duration, burst int) Option {
	return func(o *options) { o.every, o.burst = every, burst }
}

// DefaultHotEvery and DefaultHotBurst are WithHotThreshold's defaults: a
// watch follows changes at once while they come no faster than 50 a
// second, in bursts of up to 25.
const (
	DefaultHotEvery = 20 * time.Millisecond
	DefaultHotBurst = 25
)

// WithHotThreshold sets how fast a watch's index may move and still be
// followed at once: each query takes a token from a bucket of burst
// tokens refilled one per every (default 25, one per 20 ms: 50 a
// second). While the bucket has a token the query goes out at once,
// without waiting on the ceiling (WithRateLimit), so a rolling deploy's
// changes, even back to back, are seen as fast as Consul publishes them.
// The first query that finds the bucket empty makes the watch hot: it
// then polls at the ceiling (WatchStats.Hot) until one of its blocking
// queries waits at least 50 ms for an answer, which shows its index
// standing still. The 50 ms are timed from when the query is sent: its
// waits in the cache before (for a long-poll slot, WithMaxRequestRate's
// cap, an agent that came back) do not count. An index that moves 1,000 times a second thus costs
// the burst once and then the ceiling's rate. every 0 turns the fast path
// off: every query waits on the ceiling. The service watches' own loops
// use it; the change feed's checks query and the coordinate watch always
// poll at their own pace.
func WithHotThreshold(every time.Duration, burst int) Option {
	return func(o *options) { o.hotEvery, o.hotBurst = every, burst }
}

// WithMaxRequestRate caps the requests the whole cache sends, every watch
// and every part of it together, at perSecond after a burst of burst: one
// token bucket all of them share, so an operator bounds what a host, and
// a fleet of them, costs Consul whatever the services do. A request that
// has to wait for a token waits before it is sent (a blocking query
// holding its long-poll slot); RequestCap reports how many waited and for
// how long. perSecond 0 (the default) means no cap.
func WithMaxRequestRate(perSecond float64, burst int) Option {
	return func(o *options) { o.maxRate, o.maxBurst = perSecond, burst }
}

// WithMaxLongPolls caps the blocking queries in flight at once (default 64,
// well below an agent's 200 connections per client address). The first
// n-1 watches get a long poll each; beyond that, watches are driven by one
// shared change feed (see docs/architecture.md), so any number of services
// can be watched within the budget. The feed needs a backend that
// implements beacon.ServiceSummaries or beacon.ChangeFeed (consulhttp
// both, consulkit the first) and serves the local datacenter; other watches beyond the budget queue for a
// long-poll slot, and their freshness suffers. Connections to each agent,
// idle ones included, are capped at n+12 (consul.Config.MaxConns, when
// set, must allow at least that).
func WithMaxLongPolls(n int) Option { return func(o *options) { o.maxPolls = n } }

// WithNoPassingPolicy chooses what to publish when no instance passes.
func WithNoPassingPolicy(p NoPassingPolicy) Option { return func(o *options) { o.noPassing = p } }

// WithMaxPinned bounds the services Instances and Pick keep watching
// (default 1,024); past it, the least recently used one is dropped. It
// keeps names from callers (sayhello's /discovery?serviceName=) from
// growing the cache without bound.
func WithMaxPinned(n int) Option { return func(o *options) { o.maxPinned = n } }

// WithMetrics sends the cache's measurements to m (default: none).
func WithMetrics(m Metrics) Option { return func(o *options) { o.metrics = m } }

// WithAgentCache has the agent answer from its own cache (Query.Cached):
// fewer queries reach the servers.
func WithAgentCache() Option { return func(o *options) { o.cached = true } }

// WithAddressPolicy chooses which of an instance's addresses snapshots
// carry (Instance.Address and Port): by default (beacon.AddressByDatacenter)
// an instance in another datacenter, found by a watch naming it or by a
// failover, is reached at its WAN address (Instance.AddressFor, Consul's
// translate_wan_addrs rule) and one in the local datacenter at its own
// address; beacon.AddressAlwaysLAN and AddressAlwaysWAN fix the choice.
func WithAddressPolicy(p beacon.AddressPolicy) Option { return func(o *options) { o.addrPolicy = p } }

// WithStale lets any server answer (faster, works without a leader, may lag).
func WithStale() Option { return func(o *options) { o.consistency = beacon.ConsistencyStale } }

// shortConns is the connections to one agent kept beside the long polls:
// 8 for non-blocking reads (the feed's fetch workers, the stale guard's
// reads, the prober and slack) and one per remote datacenter's feed,
// whose checks query holds no long-poll slot (maxRemoteFeeds).
const shortConns = 8 + maxRemoteFeeds

// Cache holds the watches of one process. It is safe for concurrent use;
// Close stops every watch and waits for them.
type Cache struct {
	// lifetime ends at Close; the parts below get it, or the part of the
	// cache they use, never the Cache itself.
	lifetime
	o       options
	agents  *agents           // the one source: lookups, the change feed, ACL probes
	events  notify.Set[Event] // Notify's listeners (events.go)
	clients []consul.Agent    // one client per configured agent, closed at Close
	loops   loops             // what every blocking loop shares, the long-poll slots included

	rtt   *rttWatch        // the coordinate watch while a RTTWatcher holds it (rtt.go); guarded by mu
	feed  *feed            // the local datacenter's
	feeds map[string]*feed // other datacenters', started when first needed; guarded by mu
	acl   *aclGuard
	guard *staleGuard // nil with WithStaleBound(0)

	saved map[string]savedSnapshot // from WithSnapshotFile, read at New
	dirty atomic.Bool              // a snapshot changed since the file was written

	readPath atomic.Uint32          // the ReadPath of watches without their own (readpath.go)
	timeout  time.Duration          // of one short request (consul.Config.RequestTimeout)
	local    atomic.Pointer[string] // the local datacenter's name, once learned (failover.go)
	learning atomic.Bool            // a goroutine is learning it

	mu       sync.Mutex
	watches  map[string]*watch
	ownLoops int // watches with a long poll of their own
	closed   bool
	// pinned holds the watches opened by Instances and Pick (pinned.go).
	pinned *lru.Map[string, *Watcher]
	// shared holds one copy of equal metas and tags across snapshots (share.go).
	shared *shared
}

// New returns a cache reading from the agents in cfg.Addresses, in order of
// preference. Nothing is sent until a service is watched.
func New(cfg consul.Config, opts ...Option) (*Cache, error) {
	o := options{queryPoll: DefaultQueryPoll, wait: 5 * time.Minute, every: time.Second, burst: 2, hotEvery: DefaultHotEvery, hotBurst: DefaultHotBurst, maxPolls: 64, probe: 500 * time.Millisecond, maxPinned: 1024, staleBound: 10 * time.Second, rttEvery: DefaultRTTRefresh}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.backend == nil {
		o.backend = consulhttp.Backend
	}
	if o.metrics == nil {
		o.metrics = nopMetrics{}
	}
	if err := o.failover.Validate(); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	o.failover = o.failover.withDefaults()
	if err := validatePanic(o.panic); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if o.pathFile != "" {
		if o.pathEvery < 0 {
			return nil, &beacon.ValidationError{Field: "WithReadPathFile", Reason: fmt.Sprintf("%v: the period must be positive", o.pathEvery)}
		}
		if o.pathEvery == 0 {
			o.pathEvery = 10 * time.Second
		}
		p, _, err := ReadPathFromFile(o.pathFile)
		if err != nil {
			return nil, err
		}
		o.readPath = p
	}
	if err := o.readPath.Validate(); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if o.rttEvery <= 0 {
		return nil, &beacon.ValidationError{Field: "WithRTTRefresh", Reason: fmt.Sprintf("%v: the coordinate watch's refresh must be positive", o.rttEvery)}
	}
	if o.wait <= 0 || o.wait > beacon.MaxWaitTime || o.queryPoll <= 0 || o.every <= 0 || o.burst < 1 || o.maxPolls < 1 || o.maxPinned < 1 {
		return nil, &beacon.ValidationError{Field: "options", Reason: "wait must be in (0, 10m], rate and burst positive, max long polls at least 1"}
	}
	if o.hotEvery < 0 || (o.hotEvery > 0 && o.hotBurst < 1) {
		return nil, &beacon.ValidationError{Field: "WithHotThreshold", Reason: fmt.Sprintf("%v, %d: every must be 0 (off) or positive with a burst of at least 1", o.hotEvery, o.hotBurst)}
	}
	if !(o.maxRate >= 0) || math.IsInf(o.maxRate, 1) || (o.maxRate > 0 && o.maxBurst < 1) {
		return nil, &beacon.ValidationError{Field: "WithMaxRequestRate", Reason: fmt.Sprintf("%v, %d: the rate must be 0 (no cap) or a finite positive number with a burst of at least 1", o.maxRate, o.maxBurst)}
	}
	// Cap connections per agent, idle keep-alives included: the long polls
	// plus room for the feed's fetches and the prober, so a short read never
	// waits behind long polls.
	switch {
	case cfg.MaxConns == 0:
		cfg.MaxConns = o.maxPolls + shortConns
	case cfg.MaxConns < o.maxPolls+shortConns:
		return nil, &beacon.ValidationError{Field: "MaxConns", Reason: fmt.Sprintf("%d leaves no room for short reads beside %d long polls; use at least %d", cfg.MaxConns, o.maxPolls, o.maxPolls+shortConns)}
	}
	clients, err := o.backend.Agents(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	c := &Cache{o: o, watches: map[string]*watch{}, timeout: cfg.RequestTimeout()}
	c.readPath.Store(uint32(o.readPath))
	c.loops = loops{wait: o.wait, every: o.every, burst: o.burst, hotEvery: o.hotEvery, hotBurst: o.hotBurst, slots: make(slots, o.maxPolls), metrics: o.metrics}
	c.pinned = newPinned(o.maxPinned)
	c.shared = newShared()
	c.clients = clients
	c.begin()
	c.agents = newAgents(&c.lifetime, clients, o.probe, o.logger, &c.events)
	if o.maxRate > 0 {
		c.agents.limit = newRequestCap(o.maxRate, o.maxBurst)
	}
	c.guard = newStaleGuard(&c.lifetime, c.agents, c.publish, o.staleBound, o.wait, o.metrics, o.logger, &c.events)
	c.feed = c.newFeed("")
	c.feeds = map[string]*feed{}
	c.acl = &aclGuard{src: c.agents, ctx: c.ctx, hasToken: cfg.Token != "" || cfg.TokenFile != "", timeout: cfg.RequestTimeout(), metrics: o.metrics, log: o.logger}
	if o.pathFile != "" {
		c.spawn(func() { c.followPathFile(o.pathEvery) })
	}
	if cfg.TokenFile != "" {
		c.followTokenFile(cfg.NewTokenSource())
	}
	if o.snapshotFile != "" {
		var err error
		if c.saved, err = loadSnapshots(o.snapshotFile); err != nil {
			c.end() // the agents' watchdog
			c.closeRegs()
			return nil, err
		}
		c.spawn(c.persist)
	}
	return c, nil
}

func (c *Cache) closeRegs() { consul.CloseAgents(c.clients) }

// ErrClosed is returned after Close.
var ErrClosed = errors.New("discovery: cache closed")

func watchKey(q beacon.Query) string {
	// Sized up front: the key lives as long as the watch, in one allocation.
	n := len(q.Service) + len(q.Datacenter) + len(q.Filter) + len(q.Tags) + 24
	for _, t := range q.Tags {
		n += len(t)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(q.Service)
	b.WriteByte(0)
	for i, t := range q.Tags {
		if i > 0 {
			b.WriteByte(1)
		}
		b.WriteString(t)
	}
	b.WriteByte(0)
	b.WriteString(q.Datacenter)
	b.WriteByte(0)
	b.WriteString(q.Filter)
	b.WriteByte(0)
	b.WriteString(strconv.FormatBool(q.IncludeUnhealthy))
	b.WriteByte(0)
	b.WriteString(strconv.Itoa(int(q.Consistency)))
	b.WriteString(strconv.FormatBool(q.Cached))
	return b.String()
}

// Watch starts watching q, or joins the watch already running for it, and
// returns a handle; Close releases it, and the watch stops with its last
// handle. q.WaitIndex and q.WaitTime are ignored. A watch of the local
// datacenter (q.Datacenter empty) follows the cache's failover policy
// (WithFailover) unless opts say otherwise (FailOver, NoFailover).
func (c *Cache) Watch(q beacon.Query, opts ...WatchOption) (*Watcher, error) {
	wo := watchOptions{failover: c.o.failover, panic: c.o.panic}
	for _, f := range opts {
		f(&wo)
	}
	if err := validatePanic(wo.panic); err != nil {
		return nil, fmt.Errorf("discovery: watch %q: %w", q.Service, err)
	}
	if err := wo.readPath.Validate(); err != nil {
		return nil, fmt.Errorf("discovery: watch %q: %w", q.Service, err)
	}
	if q.IncludeUnhealthy {
		wo.panic = 0 // every instance is published anyway
	}
	if wo.setFailover {
		if err := wo.failover.Validate(); err != nil {
			return nil, fmt.Errorf("discovery: watch %q: %w", q.Service, err)
		}
		wo.failover = wo.failover.withDefaults()
	}
	q.WaitIndex, q.WaitTime = 0, 0
	if q.Consistency == beacon.ConsistencyDefault {
		q.Consistency = c.o.consistency
	}
	if c.o.cached && q.Consistency != beacon.ConsistencyConsistent {
		q.Cached = true
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("discovery: watch %q: %w", q.Service, err)
	}
	q.Tags = slices.Clone(q.Tags)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if q.Datacenter != "" && q.Datacenter == c.knownLocal() {
		q.Datacenter = "" // the local datacenter, named: one watch, its own addresses
	}
	key := watchKey(q) + panicKey(wo.panic)
	if wo.pinPath {
		key += "\x00path=" + wo.readPath.String()
	}
	fo := q.Datacenter == "" && wo.failover.enabled()
	if fo {
		key += wo.failover.key()
	}
	w := c.watches[key]
	created := w == nil
	if created {
		if fo {
			w = c.startFailover(key, q, wo.failover, wo.panic, wo)
		} else {
			w = c.startWatch(key, q, wo.panic, wo)
		}
		c.watches[key] = w
	}
	w.refs++
	return c.newWatcher(w, created), nil
}

// WatchStats describes one running watch.
type WatchStats struct {
	Service string
	// Tags are the watch's query's tags (every one required).
	Tags []string
	// Instances is how many instances the snapshot holds; Passing how many
	// of them pass (fewer than Instances in panic, or with AnyHealth).
	Instances int
	Passing   int
	// Index is the Consul index of the snapshot's answer; 0 before one.
	Index uint64
	// Agent is the address of the agent the cache's requests go to now.
	Agent string
	// ErrSince is when the error in Err began (the first failed query
	// since the last answer); zero while Err is nil.
	ErrSince time.Time
	// Age is how long ago Consul last answered; zero before the first answer.
	Age time.Duration
	Err error
	// Backend served the last answer (X-Consul-Query-Backend): streaming,
	// blocking-query, or "" when the agent did not say.
	Backend beacon.QueryBackend
	// ReadPath is the path the watch's last query took (see WithReadPath);
	// ReadPinned: it was chosen for this watch (UseReadPath), not by the
	// cache. AgentCache is the last answer's X-Cache ("HIT", "MISS", or ""
	// when not a ?cached answer) and CacheAge its Age.
	ReadPath   ReadPath
	ReadPinned bool
	AgentCache string
	CacheAge   time.Duration
	// StaleViews counts the stale streaming views this watch was found
	// serving and repaired (see WithStaleBound).
	StaleViews int64
	// OffStream: the watch was repaired and blocks past the streaming
	// backend (near=_agent) until the agent has dropped the stale view.
	OffStream bool
	// Datacenter is the datacenter the watch serves: the one it names, or
	// for a failover watch the one it failed over to; "" is the local one.
	Datacenter string
	// Failover: the watch has a failover policy. Failovers counts its
	// moves off the local datacenter; FailoverSince and FailoverReason
	// say when and why it last moved (off or back).
	Failover       bool
	Failovers      int64
	FailoverSince  time.Time
	FailoverReason string
	// FailoverPolicy is a failover watch's policy, defaults applied (its
	// Datacenters slice is the watch's own copy); the zero value for
	// any other watch.
	FailoverPolicy Failover
	// PreparedQuery is the name or ID of the prepared query a
	// WatchPrepared watch follows, else "". Service then holds it too.
	PreparedQuery string
	// PanicThreshold is the watch's panic threshold, 0 for none (see
	// WithPanicThreshold). Panic: its snapshot is published in panic.
	// Panics counts the times it entered panic, and PanicSince says when
	// it last entered or left it; for a failover watch, both are those of
	// the datacenter's watch it serves.
	PanicThreshold float64
	Panic          bool
	Panics         int64
	PanicSince     time.Time
	// Hot: the watch's index moved faster than WithHotThreshold follows,
	// and it polls at its ceiling (WithRateLimit) until the index stands
	// still; HotSpells counts the times it became hot. RateLimited counts
	// its queries that waited on the ceiling, and RateLimitWait is how
	// long they waited in all. All four stay zero for a watch driven by
	// the change feed (beyond WithMaxLongPolls) or a prepared query's.
	Hot           bool
	HotSpells     int64
	RateLimited   int64
	RateLimitWait time.Duration
}

// Stats describes every running watch, for metrics and status pages.
func (c *Cache) Stats() []WatchStats {
	c.mu.Lock()
	ws := make([]*watch, 0, len(c.watches))
	for _, w := range c.watches {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	out := make([]WatchStats, 0, len(ws))
	agent := ""
	for _, a := range c.agents.status() {
		if a.Current {
			agent = a.Address
		}
	}
	for _, w := range ws {
		st := WatchStats{Service: w.q.Service, Tags: slices.Clone(w.q.Tags), Agent: agent, StaleViews: w.staleViews.Load(), OffStream: w.offStream(), Datacenter: w.q.Datacenter, PreparedQuery: w.prepared}
		if p := w.pace; p != nil {
			st.Hot, st.HotSpells, st.RateLimited, st.RateLimitWait = p.hot.Load(), p.spells.Load(), p.limited.Load(), time.Duration(p.waitedNs.Load())
		}
		if f := w.fo; f != nil {
			st.Failover, st.Failovers, st.Datacenter = true, f.failovers.Load(), *f.serving.Load()
			st.FailoverPolicy = f.policy
			st.FailoverPolicy.Datacenters = slices.Clone(f.policy.Datacenters)
			if ns := f.since.Load(); ns != 0 {
				st.FailoverSince, st.FailoverReason = time.Unix(0, ns), *f.reason.Load()
			}
		}
		if b, ok := w.backend.Load().(beacon.QueryBackend); ok {
			st.Backend = b
		}
		st.ReadPath, st.ReadPinned = ReadPath(w.path.Load()), w.pinPath
		if ac := w.agentCache.Load(); ac != nil {
			st.AgentCache, st.CacheAge = ac.status, ac.age
		}
		s := w.snap.Load()
		panicStats(&st, w, s)
		if s != nil {
			st.Instances, st.Err, st.Index = len(s.Instances), s.Err, s.Index
			st.Passing = countPassing(s.Instances)
			if ns := w.errSince.Load(); s.Err != nil && ns != 0 {
				st.ErrSince = time.Unix(0, ns) // not the 1970 of an unset 0
			}
			if w.prepared != "" {
				st.Datacenter = s.Datacenter
			}
			if s.Source != SourceNone {
				st.Age = s.Age()
			}
		}
		out = append(out, st)
	}
	// By service; a failover watch before the watches it is made of, then
	// by datacenter.
	slices.SortFunc(out, func(a, b WatchStats) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		if a.Failover != b.Failover {
			if a.Failover {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Datacenter, b.Datacenter)
	})
	return out
}

// Agents describes the cache's agents, in the order of its configuration:
// which one it asks now, which are marked down and since when, and why.
func (c *Cache) Agents() []AgentStatus { return c.agents.status() }

// Watching returns how many watches are running (one per distinct query).
func (c *Cache) Watching() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.watches)
}

// Close stops every watch, cancelling their in-flight queries, and waits
// for them. It is safe to call more than once.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.end()
	c.closeRegs()
	return nil
}

// watch is one shared blocking-query loop and its latest snapshot.
//
// A cache holds one per watched query, most of them driven by the change
// feed: its fields are ordered to leave no padding, and what only some
// watches use (pacing, failover state, a context's Done channel) is a
// pointer, or made on demand. TestWatchHeapCeiling pins the total.
type watch struct {
	key string
	q   beacon.Query

	refs int32 // guarded by Cache.mu
	// fallback: the watch queries every instance and publishes the passing
	// ones, or the warning ones when none passes.
	fallback bool
	// ownLoop: the watch has a long poll of its own; fed: the change feed
	// of its datacenter drives it. A failover or prepared-query watch has
	// neither.
	ownLoop bool
	fed     bool
	// The read path's (readpath.go): the pin (UseReadPath), the path the
	// last query took, and the agent cache's word on the last answer.
	readPath   ReadPath
	pinPath    bool
	path       atomic.Uint32
	agentCache atomic.Pointer[cacheStatus]

	// panicAt is the panic threshold (panic.go), 0 for none: then the
	// watch queries every instance and publishes the passing ones, or in
	// panic every one not in maintenance.
	panicAt float64
	// pst is the panic state of a watch with a threshold, or for a
	// failover watch that of the watch it serves; nil without one.
	pst atomic.Pointer[panicState]

	// ctx is &life, as a context.Context: it ends when stopWatch stops
	// the watch, or when the cache closes (watchctx.go).
	ctx   context.Context
	life  watchLife
	snap  atomic.Pointer[Snapshot]
	pubMu sync.Mutex    // one publish at a time: the loop or feed, and the stale guard
	ready chan struct{} // closed at the first answer or error
	once  sync.Once

	// The stale guard's (stale.go).
	verifying  atomic.Bool   // a verification is pending
	reverify   atomic.Bool   // and must go round again
	backend    atomic.Value  // beacon.QueryBackend of the last answer
	staleViews atomic.Int64  // stale views found and repaired
	errSince   atomic.Int64  // unix ns of the first error since the last answer
	offUntil   atomic.Int64  // unix ns until which queries avoid streaming; 0: they don't
	gen        atomic.Uint64 // bumped at each move off or back on a view
	tripAt     atomic.Uint64 // what the next round must verify (stale.go's checkAt)
	abortMu    sync.Mutex
	abort      context.CancelCauseFunc // ends the request in flight
	asking     atomic.Pointer[asking]  // the blocking query in flight, if any

	subs subscribers

	pace     *pacing        // its own loop's rate limit (loop.go); nil for others
	fo       *failoverState // a failover watch's (failover.go); nil for others
	prepared string         // a prepared-query watch's query (prepared.go)
}

// newWatch returns a watch of q under key, with its lifetime tied to the
// cache's. Caller holds c.mu.
func (c *Cache) newWatch(key string, q beacon.Query) *watch {
	w := &watch{key: key, q: q, ready: make(chan struct{})}
	w.life.parent = &c.lifetime
	w.ctx = &w.life
	return w
}

// asking is a blocking query a watch's loop has in flight: the index it
// asked from and when it went out.
type asking struct {
	index uint64
	since time.Time
}

// startWatch starts a loop for a new watch, or hands it to the change feed
// once the long-poll budget is spent. Caller holds c.mu.
func (c *Cache) startWatch(key string, q beacon.Query, panicAt float64, wo watchOptions) *watch {
	w := c.newWatch(key, q)
	w.panicAt = panicAt
	w.fallback = c.o.noPassing == FallBackToWarning && !q.IncludeUnhealthy && panicAt == 0
	w.readPath, w.pinPath = wo.readPath, wo.pinPath
	w.path.Store(uint32(c.pathOf(w)))
	if panicAt > 0 {
		w.pst.Store(&panicState{})
	}
	if w.fallback || panicAt > 0 {
		w.q.IncludeUnhealthy = true // filtered in publish
	}
	// Each datacenter has a feed of its own, up to maxRemoteFeeds besides
	// the local one; watches of a datacenter beyond that queue for a slot.
	if c.ownLoops >= c.o.maxPolls-1 && c.agents.hasFeed() {
		if f := c.feedFor(q.Datacenter); f != nil {
			w.fed = true
			f.add(w)
			c.guard.add(w)
			return w
		}
	}
	c.ownLoops++
	w.ownLoop = true
	w.pace = &pacing{}
	c.guard.add(w)
	if c.guard != nil && q.Datacenter == "" && c.agents.hasFeed() {
		c.feed.startChecks() // the stale guard's tripwire
	}
	c.spawn(func() { c.ownLoop(w) })
	return w
}

// ownLoop is the blocking loop of a watch with a long poll of its own.
func (c *Cache) ownLoop(w *watch) {
	q := w.q
	q.WaitTime = c.loops.wait
	fetch, skip := c.fetchFor(w, q)
	run(w.ctx, c.loops, q.Service, fetch, skip, w.pace, func(f fetched, meta beacon.QueryMeta, err error) error {
		if errors.Is(err, errMovedOff) {
			return nil // not an error: the loop asks again from index 0
		}
		return c.publish(w, result{Instances: f.insts, Meta: meta, Err: err, gen: f.gen, checkGen: err == nil})
	})
	w.once.Do(func() { close(w.ready) }) // stopped before any answer
}

// stopWatch stops w, whose last handle was closed: its context ends,
// which ends its goroutine if it has one, and it leaves the feed driving
// it and the stale guard. Caller holds c.mu.
func (c *Cache) stopWatch(w *watch) {
	w.life.stop()
	if w.fed {
		// The feed that drives it: it runs while it drives a watch.
		f := c.feed
		if dc := w.q.Datacenter; dc != "" {
			f = c.feeds[dc]
		}
		if f == nil { // never: a feed runs while it drives a watch
			c.guard.remove(w)
			return
		}
		f.remove(w)
		c.guard.remove(w)
		c.dropFeed(w.q.Datacenter, f)
		return
	}
	c.guard.remove(w)
}

// fetched is one answer of a watch's own loop and the watch's generation
// when it was asked for.
type fetched struct {
	insts []beacon.Instance
	gen   uint64
}

// fetchFor is the Fetch of w's own loop: q at each index, past the
// streaming backend (near=_agent) while the stale guard has w off it, and
// ended early when the guard moves w. It is where the guard learns of a
// loop's life: its first blocking query after each (re)start from index 0
// (a new watch, an error, an index reset, another agent) is verified settle
// later, and a streaming answer below the asked index is checked at once.
//
// The second function is the loop's Skip: true once after an answer with
// fewer passing instances than the one before, so that the next change,
// often the next instance of a draining service going, is not held back by
// the rate limit (a failover waits on the last one).
func (c *Cache) fetchFor(w *watch, q beacon.Query) (blocking.Fetch[fetched], func() bool) {
	last := w.gen.Load()
	armed := false // at index 0: the next blocking query gets verified
	passingNow, answered, shrank := 0, false, false
	skip := func() bool {
		s := shrank
		shrank = false
		return s
	}
	return func(ctx context.Context, index uint64) (fetched, beacon.QueryMeta, error) {
		gen, off := w.mode()
		if gen != last && index > 0 {
			// Moved on or off a view since the last query: its index means
			// nothing on the other, so start again from 0 (Run backs off
			// briefly) and get a fresh first answer.
			last = gen
			return fetched{}, beacon.QueryMeta{}, errMovedOff
		}
		last = gen
		if w.snap.Load() == nil {
			// Never answered, and every agent already marked down (by
			// another watch, or the feed's checks query): say so now, as
			// the first query would have, rather than wait in pick for an
			// agent to come back. A resolver reports this error; a
			// snapshot file's answer is served with it.
			if err := c.unreachable(q.Service, nil); err != nil {
				return fetched{}, beacon.QueryMeta{}, err
			}
		}
		path := c.pathOf(w)
		w.path.Store(uint32(path))
		q := onPath(q, path) // this call's copy
		q.WaitIndex = index
		switch {
		case path != ReadStreaming:
			// No streaming view to leave or to verify.
		case off:
			q.Near = nearAgent
		case index == 0:
			armed = true
		case armed && c.guard != nil:
			// Only a blocking (or cached) query can be served from a view;
			// its answer may come only at the end of the wait, so the check
			// is timed from the query.
			armed = false
			c.guard.check(w, "first blocking query")
		}
		rctx, cancel := context.WithCancelCause(ctx)
		w.setAbort(cancel)
		if w.gen.Load() != gen {
			// Moved (switchPath, moveOff) after gen was read and before
			// setAbort, so its abort found nothing to end: end it here,
			// rather than hold a long poll on the path left.
			cancel(errMovedOff)
		}
		if index > 0 {
			w.asking.Store(&asking{index: index, since: time.Now()})
		}
		insts, meta, err := c.agents.Instances(rctx, q)
		w.asking.Store(nil)
		w.setAbort(nil)
		moved := errors.Is(context.Cause(rctx), errMovedOff)
		cancel(nil)
		if moved && ctx.Err() == nil {
			return fetched{}, beacon.QueryMeta{}, errMovedOff
		}
		if err != nil {
			return fetched{}, meta, err
		}
		w.backend.Store(meta.Backend)
		w.setCacheStatus(meta)
		if index > 0 && meta.LastIndex < index && meta.Backend == beacon.QueryBackendStreaming {
			if pi, pm, stale := c.guard.behind(w, index, insts, meta); stale {
				// The plain read's index is the blocking-query backend's, as
				// near=_agent's is: the loop goes on from it, past the view.
				last = w.gen.Load()
				return fetched{insts: pi, gen: last}, pm, nil
			}
		}
		if off && path == ReadStreaming {
			insts = sortedByKey(insts) // near= sorts by distance; keep snapshots in key order
		}
		n := countPassing(insts)
		shrank = answered && n < passingNow
		passingNow, answered = n, true
		return fetched{insts: insts, gen: gen}, meta, nil
	}, skip
}

// countPassing counts the passing instances of insts.
func countPassing(insts []beacon.Instance) int {
	n := 0
	for i := range insts {
		if insts[i].Health == beacon.HealthPassing {
			n++
		}
	}
	return n
}

// newFeed returns the change feed of datacenter dc ("" local). Another
// datacenter's feed lives only while it drives watches (feedFor, dropFeed).
func (c *Cache) newFeed(dc string) *feed {
	life := &c.lifetime
	if dc != "" {
		life = c.lifetime.child()
	}
	l := c.loops
	if dc != "" {
		// Its checks query holds no long-poll slot: the slots may all be
		// held by the local datacenter's watches for a whole wait, and a
		// datacenter failed over to must be followed now. There are at
		// most maxRemoteFeeds such queries, within the connections kept
		// for short reads.
		l.slots = nil
	}
	f := newFeed(life, c.agents, c.publish, l, c.o.consistency, c.o.logger)
	f.dc = dc
	if dc != "" {
		f.workers = 2 // four such feeds stay within the short-read connections
	}
	f.answered = c.guard.answered
	f.pathOf = c.pathOf
	f.unreachable = func(service string) error { return c.unreachable(service, nil) }
	f.changed = func(services map[string]bool, index uint64) { c.changed(dc, services, index) }
	f.names = func() []string { return c.watchedNames(dc) }
	return f
}

// watchedNames returns the names of the services watched in datacenter dc,
// sorted, for the change feed's filter; nil when there are none, more than
// beacon.MaxSummaryServices, or one that a filter cannot name: then the
// feed reads the whole datacenter's summaries.
func (c *Cache) watchedNames(dc string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, w := range c.watches {
		if w.q.Datacenter != dc || seen[w.q.Service] {
			continue
		}
		if len(seen) == beacon.MaxSummaryServices || !beacon.FilterableServiceName(w.q.Service) {
			return nil
		}
		seen[w.q.Service] = true
	}
	if len(seen) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(seen))
}

// maxRemoteFeeds bounds the feeds of other datacenters running at once.
const maxRemoteFeeds = 4

// feedFor returns datacenter dc's feed, starting it if needed, or nil when
// maxRemoteFeeds already run. Caller holds c.mu.
func (c *Cache) feedFor(dc string) *feed {
	if dc == "" {
		return c.feed
	}
	f := c.feeds[dc]
	if f == nil {
		if len(c.feeds) >= maxRemoteFeeds {
			return nil
		}
		f = c.newFeed(dc)
		c.feeds[dc] = f
	}
	return f
}

// dropFeed stops another datacenter's feed once it drives no watch, so a
// datacenter failed over to and back from costs nothing after. Caller
// holds c.mu.
func (c *Cache) dropFeed(dc string, f *feed) {
	if dc == "" || c.feeds[dc] != f || !f.empty() {
		return
	}
	delete(c.feeds, dc)
	f.life.cancel()
}

// changed is a change feed's tripwire: these services changed in
// datacenter dc, as the feed's answer at index says.
func (c *Cache) changed(dc string, services map[string]bool, index uint64) {
	if c.guard == nil {
		return
	}
	c.mu.Lock()
	var ws []*watch
	for _, w := range c.watches {
		if w.q.Datacenter == dc && services[w.q.Service] {
			ws = append(ws, w)
		}
	}
	c.mu.Unlock()
	c.guard.changed(ws, index)
}

// publish turns a loop result into a snapshot. Errors keep the last good
// instances and record the error; answers replace them, empty or not. It
// returns an error for an answer it did not believe (an empty list that
// ACLs caused), so the caller asks again without blocking, after a backoff.
func (c *Cache) publish(w *watch, r result) error {
	w.pubMu.Lock()
	defer w.pubMu.Unlock()
	if r.checkGen && r.gen != w.gen.Load() {
		return errMovedOff // from a view the stale guard moved w off
	}
	prev := w.snap.Load()
	// An empty answer may be ACLs hiding the service, which Consul answers
	// exactly like a scale to zero; it is checked unless the last snapshot
	// was already a believed empty one.
	if r.Err == nil && len(r.Instances) == 0 && (prev == nil || prev.Err != nil || len(prev.Instances) > 0) {
		insts, err := c.acl.check(w, r.Meta)
		if err != nil {
			r.Err = err
		} else if len(insts) > 0 {
			r.Instances = insts // a fresher answer than the empty one
		}
	}
	var next *Snapshot
	if r.Err != nil && prev != nil && isHidden(r.Err) && isHidden(prev.Err) {
		return r.Err // still hidden: already published, nobody is woken
	}
	if r.Err != nil {
		if prev == nil || prev.Err == nil {
			w.errSince.Store(time.Now().UnixNano()) // WatchStats.ErrSince
		}
		if !isHidden(r.Err) { // reported once by the guard
			c.o.metrics.WatchError(w.q.Service)
			c.o.logger.Warn("discovery: watch error; serving the last good snapshot", "service", w.q.Service, "err", r.Err)
		}
		if prev != nil {
			next = prev.failed(r.Err)
		} else if saved, ok := c.saved[w.key]; ok {
			// No answer yet in this process: serve what the last one saved,
			// with its age and this error.
			next = newSnapshot(w.q.Service, SourceFile, saved.Instances, nil, 0, saved.Updated)
			next.Err = r.Err
			next.Datacenter = w.q.Datacenter
			if _, v := policy(w, saved.Instances); v.panic {
				markPanic(next) // what was saved is what was published: panic again
			}
		} else {
			next = newSnapshot(w.q.Service, SourceNone, nil, nil, 0, time.Time{})
			next.Err = r.Err
			next.Datacenter = w.q.Datacenter
		}
	} else {
		// dedupe.go: one entry per endpoint, before the policy counts them.
		insts, v := policy(w, dedupe(c.translate(r.Instances, w.q.Datacenter != "")))
		c.notePanic(w, v)
		if prev != nil && prev.Err == nil && prev.Panic == v.panic && sameInstances(prev.Instances, insts) {
			w.snap.Store(prev.refreshed(r.Meta.LastIndex, time.Now())) // fresher, unchanged: nobody is woken
			w.once.Do(func() { close(w.ready) })
			return nil
		}
		c.shared.instances(insts) // share.go
		var was []beacon.Instance
		if prev != nil {
			was = prev.Instances
		}
		c.instanceEvents(w.q.Service, w.q.Datacenter, was, insts)
		next = newSnapshot(w.q.Service, SourceConsul, insts, prev, r.Meta.LastIndex, time.Now())
		next.Datacenter = w.q.Datacenter
		if v.panic {
			markPanic(next)
		}
		c.dirty.Store(true)
		c.o.metrics.Published(w.q.Service, len(insts))
	}
	w.snap.Store(next)
	w.once.Do(func() { close(w.ready) })
	w.notify()
	if isHidden(r.Err) {
		return r.Err
	}
	return nil
}

// translate gives insts the addresses the address policy chooses for
// instances of a remote datacenter or not (WithAddressPolicy). The LAN
// scope keeps each instance's own address: what every snapshot held
// before tagged addresses were read.
func (c *Cache) translate(insts []beacon.Instance, remote bool) []beacon.Instance {
	if c.o.addrPolicy.Scope(remote) != beacon.WAN {
		return insts
	}
	for i := range insts {
		insts[i] = insts[i].Translate(beacon.WAN)
	}
	return insts
}

// applyPolicy returns what w publishes of insts: with a panic threshold,
// what panicPolicy keeps; else all of them, or with the fallback policy the
// passing ones, or the warning ones when none passes.
func applyPolicy(w *watch, insts []beacon.Instance) []beacon.Instance {
	out, _ := policy(w, insts)
	return out
}

// policy is applyPolicy, with the panic policy's verdict.
func policy(w *watch, insts []beacon.Instance) ([]beacon.Instance, verdict) {
	if w.panicAt > 0 {
		return panicPolicy(w.panicAt, dedupe(insts))
	}
	return fallbackPolicy(w, insts), verdict{}
}

func fallbackPolicy(w *watch, insts []beacon.Instance) []beacon.Instance {
	if !w.fallback {
		return insts
	}
	var passing, warning []beacon.Instance
	for _, in := range insts {
		switch in.Health {
		case beacon.HealthPassing:
			passing = append(passing, in)
		case beacon.HealthWarning:
			warning = append(warning, in)
		}
	}
	if len(passing) > 0 {
		return passing
	}
	return warning
}

func sameInstances(a, b []beacon.Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.ID != y.ID || x.Node != y.Node || x.Address != y.Address || x.Port != y.Port ||
			x.Health != y.Health || x.Maintenance != y.Maintenance || x.Weights != y.Weights || !slices.Equal(x.Tags, y.Tags) || len(x.Meta) != len(y.Meta) ||
			!maps.Equal(x.TaggedAddresses, y.TaggedAddresses) || !maps.Equal(x.NodeTaggedAddresses, y.NodeTaggedAddresses) || !maps.Equal(x.NodeMeta, y.NodeMeta) {
			return false
		}
		for k, v := range x.Meta {
			if y.Meta[k] != v {
				return false
			}
		}
	}
	return true
}

// newWatcher returns a handle on w for a Watch call; started: that call
// started w. The handle's channel is made at its first Changed, which
// many callers never make (those that Pick or read Snapshot): it then
// holds the wake-up of any change since this call. When this call started
// the watch, the watch may already have published (an agent marked down
// makes it publish its error at once): then the channel starts with a
// wake-up too.
func (c *Cache) newWatcher(w *watch, started bool) *Watcher {
	h := &Watcher{c: c, w: w}
	w.subs.mu.Lock()
	h.sent = w.subs.sent
	w.subs.mu.Unlock()
	h.missed = started && w.snap.Load() != nil
	return h
}

func (w *watch) unsubscribe(ch chan struct{}) { w.subs.remove(ch) }

// notify wakes every subscriber without blocking: each channel holds at
// most one pending wake-up, and a reader always loads the newest snapshot.
func (w *watch) notify() { w.subs.notify() }

// Watcher is one caller's handle on a shared watch.
type Watcher struct {
	c  *Cache
	w  *watch
	ch atomic.Value // chan struct{}, made at the first Changed
	// sent is the watch's count of wake-ups when the handle was made, and
	// missed says the handle starts with one due: the channel made at the
	// first Changed starts with one if either says so.
	sent   uint64
	closed atomic.Bool
	missed bool
}

// Close releases the handle; the watch stops with its last handle. It is
// safe to call more than once.
func (w *Watcher) Close() {
	if w.closed.Swap(true) {
		return
	}
	// Under the lock that makes the channel: a Changed racing with Close
	// either subscribed its channel before (removed here) or sees closed.
	s := &w.w.subs
	s.mu.Lock()
	if ch, ok := w.ch.Load().(chan struct{}); ok {
		if i := slices.Index(s.chs, ch); i >= 0 {
			s.chs = slices.Delete(s.chs, i, i+1)
		}
	}
	s.mu.Unlock()
	c := w.c
	c.mu.Lock()
	w.w.refs--
	if w.w.refs == 0 {
		delete(c.watches, w.w.key)
		if w.w.ownLoop {
			c.ownLoops--
		}
		c.stopWatch(w.w)
	}
	c.mu.Unlock()
}

// addSub subscribes ch, owned by the caller, to w's changes.
func (w *watch) addSub(ch chan struct{}) { w.subs.add(ch) }
