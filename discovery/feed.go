package discovery

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/backoff"
	"github.com/beaconsd/beacon/internal/blocking"
)

// feed drives the watches beyond the long-poll budget, so one process can
// watch thousands of services through a handful of connections:
//
//   - one blocking query on /v1/health/state/any (it wakes on any check
//     change, registrations and deregistrations of checked services
//     included) tells which services' checks changed, and only those are
//     fetched, at once, by a few workers;
//   - every feed watch is also fetched once per wait period, spread evenly,
//     which catches what touches no check (a meta- or tag-only change) and
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
	// first), and changed of the services whose checks changed: the stale
	// guard's hooks (stale.go); the feed's checks query is its tripwire.
	answered func(w *watch, meta beacon.QueryMeta, fresh bool)
	changed  func(services map[string]bool)
	// unreachable returns the error of a service asked for while every
	// agent is marked down, else nil.
	unreachable func(service string) error
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

// startChecks starts the blocking query on every check, if it is not
// running: for the watches the feed drives, or as the stale guard's tripwire.
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

// watchChecks runs the blocking query on every check of the datacenter, in
// the one blocking loop, and queues the watches whose service's checks
// changed.
func (f *feed) watchChecks() {
	q := beacon.ChecksQuery{Datacenter: f.dc, Consistency: f.consistency, WaitTime: f.loop.wait}
	l := f.loop
	l.hotEvery = 0 // one answer is the datacenter's every check: poll it at the ceiling
	run(f.life.ctx, l, "", blocking.Checks(f.src, q), nil, nil, func(checks []beacon.CheckState, _ beacon.QueryMeta, err error) error {
		if err != nil {
			f.loop.metrics.WatchError("")
			f.log.Warn("discovery: change feed error", "datacenter", dcName(f.dc), "err", err)
			return nil
		}
		f.diff(checks)
		return nil
	})
}

// diff compares per-service and per-node digests of the checks with the
// last ones and queues the watches they concern.
func (f *feed) diff(checks []beacon.CheckState) {
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
	// changed, whether or not the last snapshot held them.
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
		f.changed(changed) // the stale guard's tripwire; outside f.mu, as it takes the cache's lock
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

// errNoFeed: the agent's client cannot list checks.
var errNoFeed = errors.New("discovery: backend has no change feed")
