package discovery

import (
	"context"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/beaconsd/beacon"
	wloop "github.com/beaconsd/beacon/internal/watch"
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
type feed struct {
	c       *Cache
	workers int

	mu       sync.Mutex
	started  bool
	watches  map[*watch]struct{}
	queue    []*watch
	queued   map[*watch]bool
	running  map[*watch]bool // being fetched: never two fetches of one watch at once
	rerun    map[*watch]bool // queued again while running
	wake     chan struct{}   // capacity 1: work was queued
	services map[string]uint64
	nodes    map[string]uint64
}

func newFeed(c *Cache) *feed {
	return &feed{c: c, workers: 4, watches: map[*watch]struct{}{}, queued: map[*watch]bool{}, running: map[*watch]bool{}, rerun: map[*watch]bool{}, wake: make(chan struct{}, 1)}
}

// add makes w feed-driven and fetches it at once.
func (f *feed) add(w *watch) {
	f.mu.Lock()
	f.watches[w] = struct{}{}
	if !f.started {
		f.started = true
		f.c.wg.Add(2 + f.workers)
		go f.watchChecks()
		go f.sweep()
		for range f.workers {
			go f.work()
		}
	}
	f.mu.Unlock()
	f.enqueue(w)
}

func (f *feed) remove(w *watch) {
	f.mu.Lock()
	delete(f.watches, w)
	f.mu.Unlock()
	w.once.Do(func() { close(w.ready) })
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
	defer f.c.wg.Done()
	ctx := f.c.ctx
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
		f.c.o.metrics.Request(w.q.Service)
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		insts, meta, err := f.c.agents.Instances(qctx, w.q)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if perr := f.c.publish(w, wloop.Result{Instances: insts, Meta: meta, Err: err}); perr != nil {
			err = perr
		}
		if err != nil {
			f.retryLater(w)
		} else {
			w.retry.Store(0)
		}
		f.mu.Lock()
		delete(f.running, w)
		again := f.rerun[w]
		delete(f.rerun, w)
		f.mu.Unlock()
		if again {
			f.enqueue(w)
		}
	}
}

// retryLater queues a watch whose fetch failed again after a jittered
// backoff (100 ms doubling to 10 s), rather than leaving it stale until
// the sweep comes round.
func (f *feed) retryLater(w *watch) {
	n := min(w.retry.Add(1), 7)
	d := 100 * time.Millisecond << (n - 1)
	d = min(d, 10*time.Second)
	d = d/2 + rand.N(d/2+1)
	f.c.wg.Add(1)
	go func() {
		defer f.c.wg.Done()
		if sleepCtx(f.c.ctx, d) {
			f.enqueue(w)
		}
	}()
}

// sweep fetches every feed watch once per wait period, evenly spread.
func (f *feed) sweep() {
	defer f.c.wg.Done()
	ctx := f.c.ctx
	for {
		f.mu.Lock()
		ws := make([]*watch, 0, len(f.watches))
		for w := range f.watches {
			ws = append(ws, w)
		}
		f.mu.Unlock()
		if len(ws) == 0 {
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		step := f.c.o.wait / time.Duration(len(ws))
		for _, w := range ws {
			if !sleepCtx(ctx, step) {
				return
			}
			f.enqueue(w)
		}
	}
}

// watchChecks runs the blocking query on every check of the datacenter and
// queues the watches whose service's checks changed.
func (f *feed) watchChecks() {
	defer f.c.wg.Done()
	ctx := f.c.ctx
	limiter := rate.NewLimiter(rate.Every(f.c.o.every), f.c.o.burst)
	var index uint64
	backoff := 100 * time.Millisecond
	for {
		if limiter.Wait(ctx) != nil {
			return
		}
		f.c.o.metrics.Request("")
		checks, meta, err := f.c.agents.Checks(ctx, f.c.sem, beacon.ChecksQuery{Consistency: f.c.o.consistency, WaitIndex: index, WaitTime: f.c.o.wait})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			index = 0
			f.c.o.metrics.WatchError("")
			f.c.o.logger.Warn("discovery: change feed error", "err", err)
			if !sleepCtx(ctx, backoff/2+rand.N(backoff/2+1)) {
				return
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		next := max(meta.LastIndex, 1) // below 1 counts as 1 before comparing
		if next < index {
			next = 0 // went backwards: the agent's state was reset
			f.c.o.metrics.IndexReset("")
		}
		if index == 0 || next != index {
			f.diff(checks)
		}
		index = next
	}
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
	if !first {
		for w := range f.watches {
			if changed[w.q.Service] || onNodes(w, changedNodes) {
				todo = append(todo, w)
			}
		}
	}
	f.mu.Unlock()
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

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errNoFeed: the agent's client cannot list checks.
var errNoFeed = errors.New("discovery: backend has no change feed")
