package discovery

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/backoff"
	"github.com/beaconsd/beacon/internal/blocking"
)

// feed drives the watches beyond the long-poll budget, so one process can
// watch thousands of services through a handful of connections:
//
//   - one blocking query tells which services changed, and only those are
//     fetched, at once, by a few workers. It is GET
//     /v1/internal/ui/services (beacon.ServiceSummaries: one summary per
//     service, whose counts and digest move with registrations,
//     deregistrations and health changes, node checks included) or, from
//     an agent that does not serve it, /v1/health/state/any
//     (beacon.ChangeFeed: every check, about six times the bytes: 50 MB at
//     100,000 instances);
//   - every feed watch is also fetched once per wait period, spread evenly,
//     which catches what the query does not show (a meta-only change; with
//     summaries, changes that leave a service's counts as they were) and
//     costs about one request per service per wait period while idle, as
//     a per-service long poll would.
//
// It gets what it uses, not the cache: a lifetime for its goroutines, the
// source it reads, the publish function its answers go to, the loop
// settings its blocking query shares with the watches, and a logger.
type feed struct {
	life        *lifetime
	src         feedSource
	publish     func(*watch, result) error
	loop        loops
	consistency beacon.Consistency // of the checks query
	dc          string             // the datacenter whose checks it follows; "" local
	log         *slog.Logger
	workers     int
	// answered is told of each answer published for a watch (fresh: its
	// first), and changed of the services the feed saw change, with the
	// index of the feed's answer: the stale guard's hooks (stale.go); the
	// feed's query is its tripwire.
	answered func(w *watch, meta beacon.QueryMeta, fresh bool)
	changed  func(services map[string]bool, index uint64)
	// unreachable returns the error of a service asked for while every
	// agent is marked down, else nil.
	unreachable func(service string) error
	// names lists the services the cache watches in the feed's
	// datacenter, for the summaries' filter (ServicesQuery.Services); nil
	// from it, or a nil names: the whole datacenter's summaries.
	names func() []string
	// pathOf is the read path of a watch's next read (readpath.go); nil:
	// the query as it is.
	pathOf func(w *watch) ReadPath

	mu       sync.Mutex
	started  bool
	checking bool // watchChecks runs
	watches  map[*watch]struct{}
	queue    []*watch
	queued   map[*watch]bool
	running  map[*watch]bool             // being fetched: never two fetches of one watch at once
	rerun    map[*watch]bool             // queued again while running
	retry    map[*watch]*backoff.Backoff // backoff of watches whose last fetch failed
	wake     chan struct{}               // capacity 1: work was queued
	services map[string]uint64
	nodes    map[string]uint64
}

// feedSource is what the feed reads: the agents.
type feedSource interface {
	beacon.Lookup
	beacon.ChangeFeed
	beacon.ServiceSummaries
}

func newFeed(life *lifetime, src feedSource, publish func(*watch, result) error, loop loops, consistency beacon.Consistency, log *slog.Logger) *feed {
	return &feed{life: life, src: src, publish: publish, loop: loop, consistency: consistency, log: log, workers: 4,
		watches: map[*watch]struct{}{}, queued: map[*watch]bool{}, running: map[*watch]bool{}, rerun: map[*watch]bool{}, retry: map[*watch]*backoff.Backoff{}, wake: make(chan struct{}, 1)}
}

// add makes w feed-driven and fetches it at once.
func (f *feed) add(w *watch) {
	f.mu.Lock()
	f.watches[w] = struct{}{}
	if !f.started {
		f.started = true
		f.startChecksLocked()
		f.life.spawn(f.sweep)
		for range f.workers {
			f.life.spawn(f.work)
		}
	}
	f.mu.Unlock()
	f.enqueue(w)
}

// startChecks starts the feed's blocking query, if it is not running: for
// the watches the feed drives, or as the stale guard's tripwire.
func (f *feed) startChecks() {
	f.mu.Lock()
	f.startChecksLocked()
	f.mu.Unlock()
}

func (f *feed) startChecksLocked() {
	if !f.checking {
		f.checking = true
		f.life.spawn(f.watchChecks)
	}
}

func (f *feed) remove(w *watch) {
	f.mu.Lock()
	delete(f.watches, w)
	delete(f.retry, w)
	f.mu.Unlock()
	w.once.Do(func() { close(w.ready) })
}

// empty reports whether the feed drives no watch.
func (f *feed) empty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watches) == 0
}

func (f *feed) enqueue(ws ...*watch) {
	f.mu.Lock()
	for _, w := range ws {
		if _, live := f.watches[w]; live && !f.queued[w] {
			f.queued[w] = true
			f.queue = append(f.queue, w)
		}
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *feed) next() *watch {
	f.mu.Lock()
	defer f.mu.Unlock()
	var w *watch
	for w == nil && len(f.queue) > 0 {
		w = f.queue[0]
		f.queue = f.queue[1:]
		delete(f.queued, w)
		if _, live := f.watches[w]; !live {
			w = nil // closed while queued
		} else if f.running[w] {
			f.rerun[w] = true // fetched again when the running fetch ends
			w = nil
		}
	}
	if w == nil {
		return nil
	}
	f.running[w] = true
	if len(f.queue) > 0 {
		select { // more work: keep another worker going
		case f.wake <- struct{}{}:
		default:
		}
	}
	return w
}

// work fetches queued watches with non-blocking queries.
func (f *feed) work() {
	ctx := f.life.ctx
	for {
		w := f.next()
		if w == nil {
			select {
			case <-ctx.Done():
				return
			case <-f.wake:
				continue
			}
		}
		f.loop.metrics.Request(w.q.Service)
		q := w.q
		gen, off := w.mode()
		if f.pathOf != nil {
			path := f.pathOf(w)
			w.path.Store(uint32(path))
			q = onPath(q, path)
		}
		if off && !q.NoStreaming {
			q.Cached = false // the stale guard moved w off the agent's (streaming) cache
		}
		var insts []beacon.Instance
		var meta beacon.QueryMeta
		var err error
		if w.snap.Load() == nil && f.unreachable != nil {
			err = f.unreachable(q.Service) // never answered: say so now, not after the timeout
		}
		if err == nil {
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			insts, meta, err = f.src.Instances(qctx, q)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		first := w.snap.Load() == nil || w.snap.Load().Source != SourceConsul
		perr := f.publish(w, result{Instances: insts, Meta: meta, Err: err, gen: gen, checkGen: err == nil})
		if errors.Is(perr, errMovedOff) {
			perr = nil
			f.enqueue(w) // moved while asking: ask again on the new footing
		} else if err == nil && perr == nil && f.answered != nil {
			f.answered(w, meta, first) // plain reads say blocking-query: only ?cached ones get verified
		}
		if perr != nil {
			err = perr
		}
		f.mu.Lock()
		var retryIn time.Duration
		if _, live := f.watches[w]; err != nil && live {
			b := f.retry[w]
			if b == nil {
				b = &backoff.Backoff{}
				f.retry[w] = b
			}
			retryIn = b.Next()
		} else {
			delete(f.retry, w)
		}
		delete(f.running, w)
		again := f.rerun[w]
		delete(f.rerun, w)
		f.mu.Unlock()
		if again {
			f.enqueue(w)
		}
		if retryIn > 0 {
			f.retryLater(w, retryIn)
		}
	}
}

// retryLater queues a watch whose fetch failed again after d (the
// watch's backoff: 100 ms doubling to 10 s, jittered), rather than
// leaving it stale until the sweep comes round.
func (f *feed) retryLater(w *watch, d time.Duration) {
	f.life.spawn(func() {
		if backoff.Sleep(f.life.ctx, d) {
			f.enqueue(w)
		}
	})
}

// sweep fetches every feed watch once per wait period, evenly spread.
func (f *feed) sweep() {
	sweepEvenly(f.life.ctx, &f.mu, f.watches, f.loop.wait, func(w *watch) { f.enqueue(w) })
}

// sweepEvenly calls visit for every watch in set (read under mu) once per
// period, spread evenly over it, until ctx ends; watches added during a
// round wait for the next. With none, it looks again every second.
func sweepEvenly(ctx context.Context, mu *sync.Mutex, set map[*watch]struct{}, period time.Duration, visit func(*watch)) {
	for {
		mu.Lock()
		ws := make([]*watch, 0, len(set))
		for w := range set {
			ws = append(ws, w)
		}
		mu.Unlock()
		if len(ws) == 0 {
			if !backoff.Sleep(ctx, time.Second) {
				return
			}
			continue
		}
		step := period / time.Duration(len(ws))
		for _, w := range ws {
			if !backoff.Sleep(ctx, step) {
				return
			}
			visit(w)
		}
	}
}

// watchChecks runs the feed's blocking query, in the one blocking loop,
// and queues the watches of the services it says changed: the service
// summaries (beacon.ServiceSummaries, one entry per service) when the
// agent serves them, else every check of the datacenter (beacon.ChangeFeed,
// one entry per check: about six times the bytes).
func (f *feed) watchChecks() {
	if f.watchSummaries() {
		return // the cache closed
	}
	f.log.Info("discovery: the agent serves no service summaries; the change feed reads every check instead",
		"datacenter", dcName(f.dc))
	// The checks' digests are not the summaries': the first answer is a
	// first again, refetching every feed watch rather than calling every
	// service changed.
	f.mu.Lock()
	f.services, f.nodes = nil, nil
	f.mu.Unlock()
	q := beacon.ChecksQuery{Datacenter: f.dc, Consistency: f.consistency, WaitTime: f.loop.wait}
	l := f.loop
	l.hotEvery = 0 // one answer is the datacenter's every check: poll it at the ceiling
	ctx, stop := context.WithCancel(f.life.ctx)
	defer stop()
	run(ctx, l, "", blocking.Checks(f.src, q), nil, nil, func(checks []beacon.CheckState, meta beacon.QueryMeta, err error) error {
		if errors.Is(err, errNoFeed) {
			// A client that can summarise services but not list checks
			// (consulkit), on an agent without summaries: the sweep alone
			// keeps feed watches fresh, once per wait period.
			f.log.Warn("discovery: the change feed has nothing to follow; feed-driven watches are fetched once per wait period", "datacenter", dcName(f.dc))
			stop()
			return nil
		}
		if err != nil {
			f.feedError(err)
			return nil
		}
		f.diff(checks, meta.LastIndex)
		return nil
	})
}

// watchSummaries follows the service summaries until the cache closes
// (true) or the agent turns out not to serve them (false): it answers 404
// or 405 (an older or another kind of agent: the endpoint is internal to
// Consul), or its client cannot ask. Once fallen back, the feed stays on
// every check for its life.
func (f *feed) watchSummaries() bool {
	ctx, stop := context.WithCancel(f.life.ctx)
	defer stop()
	missing := false
	q := beacon.ServicesQuery{Datacenter: f.dc, Consistency: f.consistency, WaitTime: f.loop.wait}
	l := f.loop
	l.hotEvery = 0     // one answer is every service of the datacenter: poll it at the ceiling
	var asked []string // the names the last round asked for
	fetch := func(ctx context.Context, index uint64) ([]beacon.ServiceSummary, beacon.QueryMeta, error) {
		if f.names != nil {
			// Each round asks for the services watched now. When they
			// changed, a change to a service just watched may already be
			// in the index the round would block on, answered to a round
			// that did not name it: read the new names at once first, and
			// digest that answer (a service new there counts as changed).
			names := f.names()
			if index > 0 && !slices.Equal(names, asked) {
				now := q
				now.Services, now.WaitIndex = names, 0
				list, meta, err := f.src.ServiceSummaries(ctx, now)
				if err != nil {
					return nil, beacon.QueryMeta{}, err
				}
				f.diffSummaries(list, meta.LastIndex)
			}
			q.Services, asked = names, names
		}
		q.WaitIndex = index
		return f.src.ServiceSummaries(ctx, q)
	}
	run(ctx, l, "", fetch, nil, nil, func(list []beacon.ServiceSummary, meta beacon.QueryMeta, err error) error {
		if err != nil {
			if noSummaries(err) {
				missing = true
				stop()
				return nil
			}
			f.feedError(err)
			return nil
		}
		f.diffSummaries(list, meta.LastIndex)
		return nil
	})
	return !missing
}

// noSummaries reports whether err says the agent does not serve service
// summaries at all, rather than failing to now.
func noSummaries(err error) bool {
	var se *beacon.StatusError
	if errors.As(err, &se) {
		return se.StatusCode == http.StatusNotFound || se.StatusCode == http.StatusMethodNotAllowed
	}
	return errors.Is(err, errNoFeed)
}

func (f *feed) feedError(err error) {
	f.loop.metrics.WatchError("")
	f.log.Warn("discovery: change feed error", "datacenter", dcName(f.dc), "err", err)
}

// diffSummaries compares a digest of each service's summary with the last
// and queues the watches of the services whose digest changed, appeared or
// went. A summary holds counts (instances; checks passing, warning,
// critical, a node's checks counted once for each service on the node)
// and a digest of node names and tags, so what it catches is what changes
// those: a registration, a deregistration, a health change of a service
// check or of a node check (every service on the node changes), a node or
// tag more or less. What it misses (documented in docs/architecture.md):
// changes that leave every count as it was within one blocking round (two
// opposite flips, a swap of health between two instances of a service, an
// instance replaced by another on the same node) and meta-only changes,
// which neither this nor the checks feed ever showed; the sweep fetches
// every feed watch once per wait period and catches them then.
func (f *feed) diffSummaries(list []beacon.ServiceSummary, index uint64) {
	services := make(map[string]uint64, len(list))
	for _, s := range list {
		// FNV-1a of the five figures, inline: no hasher per service.
		h := uint64(14695981039346656037)
		for _, v := range [5]uint64{uint64(s.Instances), uint64(s.Passing), uint64(s.Warning), uint64(s.Critical), s.Digest} {
			for j := range 8 {
				h ^= uint64(byte(v >> (8 * j)))
				h *= 1099511628211
			}
		}
		// A sum: a name listed twice (a service of the same name from a
		// peer) counts both, in any order.
		services[s.Name] += h
	}
	f.apply(services, nil, nil, index)
}

// diff compares per-service and per-node digests of the checks with the
// last ones and queues the watches they concern.
func (f *feed) diff(checks []beacon.CheckState, index uint64) {
	services, nodes := map[string]uint64{}, map[string]uint64{}
	onNode := map[string]map[string]bool{} // node → services with checks there
	for _, ch := range checks {
		h := fnv.New64a()
		h.Write([]byte(ch.Node))
		h.Write([]byte{0})
		h.Write([]byte(ch.CheckID))
		h.Write([]byte{0})
		h.Write([]byte(ch.ServiceID))
		h.Write([]byte{0})
		h.Write([]byte(ch.Status))
		var b [8]byte
		for i := range b {
			b[i] = byte(ch.ModifyIndex >> (8 * i))
		}
		h.Write(b[:])
		if ch.ServiceName == "" {
			nodes[ch.Node] += h.Sum64() // a sum: independent of order
		} else {
			services[ch.ServiceName] += h.Sum64()
			if onNode[ch.Node] == nil {
				onNode[ch.Node] = map[string]bool{}
			}
			onNode[ch.Node][ch.ServiceName] = true
		}
	}
	f.apply(services, nodes, onNode, index)
}

// apply takes new per-service digests (and, from the checks, per-node
// digests and the services on each node), queues the watches of what
// changed, and tells the stale guard, with index, the feed answer's.
func (f *feed) apply(services, nodes map[string]uint64, onNode map[string]map[string]bool, index uint64) {
	f.mu.Lock()
	first := f.services == nil
	changed := map[string]bool{}
	for name, d := range services {
		if f.services[name] != d {
			changed[name] = true
		}
	}
	for name := range f.services {
		if _, ok := services[name]; !ok {
			changed[name] = true
		}
	}
	// A node check change (serfHealth) changes the health of every service
	// on the node, though not their own checks: those services count as
	// changed, whether or not the last snapshot held them. (Summaries
	// count node checks in each service's figures: no nodes here.)
	changedNodes := map[string]bool{}
	for n, d := range nodes {
		if f.nodes[n] != d {
			changedNodes[n] = true
		}
	}
	for n := range f.nodes {
		if _, ok := nodes[n]; !ok {
			changedNodes[n] = true
		}
	}
	for n := range changedNodes {
		for svc := range onNode[n] {
			changed[svc] = true
		}
	}
	f.services, f.nodes = services, nodes
	var todo []*watch
	// The first answer has nothing to compare with, and a change made
	// after a watch's first fetch but before this answer is already in
	// it: every watch there is (usually the one that started the feed)
	// is fetched again, or such a change would wait for the sweep.
	for w := range f.watches {
		if first || changed[w.q.Service] || onNodes(w, changedNodes) {
			todo = append(todo, w)
		}
	}
	f.mu.Unlock()
	if !first && len(changed) > 0 && f.changed != nil {
		f.changed(changed, index) // the stale guard's tripwire; outside f.mu, as it takes the cache's lock
	}
	f.enqueue(todo...)
}

// onNodes reports whether w's last snapshot has an instance on one of nodes.
func onNodes(w *watch, nodes map[string]bool) bool {
	if len(nodes) == 0 {
		return false
	}
	s := w.snap.Load()
	if s == nil {
		return false
	}
	for _, in := range s.Instances {
		if nodes[in.Node] {
			return true
		}
	}
	return false
}

// errNoFeed: the agent's client cannot list checks (or summarise services).
var errNoFeed = errors.New("discovery: backend has no change feed")
