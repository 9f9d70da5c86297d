package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
)

// DefaultRTTRefresh is how often, at most, the coordinate watch asks again
// after a change (WithRTTRefresh).
const DefaultRTTRefresh = 30 * time.Second

// WithRTTRefresh spaces the coordinate watch's queries (WatchRTTs): after
// a change it asks again no sooner than d (default 30 s). Every agent of a
// datacenter sends its coordinate every 15 s or more, so in a datacenter
// of any size the coordinates change all the time, and each answer lists
// every node (some 250 bytes each); network coordinates drift slowly, and
// the nearest node rarely changes between two refreshes.
func WithRTTRefresh(d time.Duration) Option { return func(o *options) { o.rttEvery = d } }

// errNoCoordinates: the backend cannot list node coordinates.
var errNoCoordinates = errors.New("the backend does not list node coordinates")

// rttWatch is the cache's one coordinate watch: a blocking query on the
// local datacenter's LAN coordinates (GET /v1/coordinate/nodes), turned
// into a table of RTTs from the current agent's node at each change. It
// runs while a RTTWatcher holds it. Only the local datacenter has one: LAN
// coordinates of different datacenters are separate spaces, and the
// caller's node is in the local one.
type rttWatch struct {
	refs   int // guarded by Cache.mu
	cancel context.CancelFunc

	table atomic.Pointer[beacon.NodeRTTs]
	err   atomic.Pointer[error] // the last query's error; nil after an answer
	ready chan struct{}         // closed at the first answer or error
	once  sync.Once

	subs subscribers // the RTTWatchers' Changed
}

// WatchRTTs starts the cache's coordinate watch, or joins it, and returns
// a handle whose RTTs are the estimated round-trip times from the node of
// the agent the cache reads from to every node of the local datacenter
// with a coordinate. The node's name (GET /v1/agent/self) is asked of the
// agent that lists the coordinates, in the same call, again whenever the
// watch starts over or that agent is not the one that answered last (the
// cache moved to another agent). Close releases the handle; the watch
// stops with the last one, or with the cache.
//
// The watch holds a long-poll slot of the cache's budget
// (WithMaxLongPolls) like a service watch with a loop of its own, reads
// with ?stale (any server; coordinates are estimates anyway), and asks at
// most once per WithRTTRefresh after a change. It never adds ?near= to a
// health query, so service watches keep the agent's streaming backend.
// It needs a backend that implements beacon.NodeCoordinateLister (both
// do); otherwise it returns an error.
func (c *Cache) WatchRTTs() (*RTTWatcher, error) {
	if !c.agents.hasCoordinates() {
		return nil, fmt.Errorf("discovery: watch RTTs: %w", errNoCoordinates)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.rtt == nil {
		c.rtt = c.startRTTs()
	}
	c.rtt.refs++
	h := &RTTWatcher{c: c, w: c.rtt, ch: make(chan struct{}, 1)}
	c.rtt.subs.add(h.ch)
	return h, nil
}

// startRTTs starts the coordinate watch's loop. Caller holds c.mu.
func (c *Cache) startRTTs() *rttWatch {
	w := &rttWatch{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(c.ctx)
	// It counts as a watch with a loop of its own, so that service watches
	// beyond the budget go to the change feed rather than queue with it
	// for the slots.
	c.ownLoops++
	w.cancel = func() { cancel(); c.ownLoops-- } // called with c.mu held
	l := c.loops
	l.every, l.burst = c.o.rttEvery, 2 // the first answer, then the first blocking query, at once
	l.hotEvery = 0                     // a refresh, spaced whatever the coordinates do
	// The table is from the node of the agent that answered the
	// coordinates: the name and the coordinates are asked of one agent in
	// one call, and when that agent is not the one that answered last (the
	// cache moved, even while this loop waited on its rate limit), the
	// name is asked again and the query starts over from index 0.
	from, fromAgent := "", -1
	fetch := func(ctx context.Context, index uint64) (*beacon.NodeRTTs, beacon.QueryMeta, error) {
		return callAt(c.agents, ctx, false, func(ctx context.Context, i int, reg beacon.Lookup) (*beacon.NodeRTTs, beacon.QueryMeta, error) {
			l, ok := reg.(beacon.NodeCoordinateLister)
			if !ok {
				return nil, beacon.QueryMeta{}, errNoCoordinates
			}
			if index == 0 || i != fromAgent {
				index, fromAgent = 0, -1
				rctx, cancel := context.WithTimeout(ctx, c.timeout)
				name, err := l.LocalNode(rctx)
				cancel()
				if err != nil {
					return nil, beacon.QueryMeta{}, fmt.Errorf("discovery: the local node's name: %w", err)
				}
				from, fromAgent = name, i
			}
			coords, meta, err := l.NodeCoordinates(ctx, beacon.CoordinatesQuery{Consistency: beacon.ConsistencyStale, WaitIndex: index, WaitTime: c.loops.wait})
			if err != nil {
				return nil, meta, err
			}
			return beacon.NewNodeRTTs(from, meta.LastIndex, coords), meta, nil
		})
	}
	c.spawn(func() {
		run(ctx, l, "", fetch, nil, nil, func(t *beacon.NodeRTTs, _ beacon.QueryMeta, err error) error {
			w.publish(t, err, c)
			return nil
		})
		w.once.Do(func() { close(w.ready) }) // stopped before any answer
	})
	return w
}

// publish records an answer or an error. An error keeps the last table;
// a table equal to the last one is not published, so balancers keep the
// plans they built for it.
func (w *rttWatch) publish(t *beacon.NodeRTTs, err error, c *Cache) {
	if err != nil {
		// Warn at the first error of a run, not at every retry: an agent
		// with coordinates disabled answers 401 for good.
		level := slog.LevelWarn
		if w.err.Swap(&err) != nil {
			level = slog.LevelDebug
		}
		c.o.metrics.WatchError("")
		c.o.logger.Log(context.Background(), level, "discovery: coordinate watch error; keeping the last RTTs", "err", err)
		w.once.Do(func() { close(w.ready) })
		return
	}
	w.err.Store(nil)
	if prev := w.table.Load(); prev != nil && prev.From == t.From && sameRTTs(prev, t) {
		w.once.Do(func() { close(w.ready) })
		return
	}
	w.table.Store(t)
	w.once.Do(func() { close(w.ready) })
	w.subs.notify()
}

// sameRTTs reports whether a and b hold the same times.
func sameRTTs(a, b *beacon.NodeRTTs) bool {
	if a.Len() != b.Len() {
		return false
	}
	for node, d := range a.All() {
		if e, ok := b.RTT(node); !ok || e != d {
			return false
		}
	}
	return true
}

// RTTWatcher is one caller's handle on the cache's coordinate watch
// (WatchRTTs). Its methods are safe for concurrent use.
type RTTWatcher struct {
	c      *Cache
	w      *rttWatch
	ch     chan struct{}
	closed atomic.Bool
}

// RTTs returns the latest table of estimated round-trip times, or nil
// before the first answer. It takes no lock and touches no network. A
// table is immutable; a new one, a different pointer, comes with each
// change. While Consul cannot be asked, the last table is kept.
func (h *RTTWatcher) RTTs() *beacon.NodeRTTs { return h.w.table.Load() }

// Err returns the last query's error, or nil when it was answered.
func (h *RTTWatcher) Err() error {
	if p := h.w.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Changed receives a value after the table changed; load it with RTTs.
func (h *RTTWatcher) Changed() <-chan struct{} { return h.ch }

// Wait returns the first table, waiting for the watch's first answer as
// long as ctx allows; when the first attempt failed instead, it returns
// that error.
func (h *RTTWatcher) Wait(ctx context.Context) (*beacon.NodeRTTs, error) {
	select {
	case <-h.w.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("discovery: waiting for RTTs: %w", ctx.Err())
	}
	if t := h.w.table.Load(); t != nil {
		return t, nil
	}
	if err := h.Err(); err != nil {
		return nil, err
	}
	return nil, ErrClosed
}

// Close releases the handle; the watch stops with the last one. It is safe
// to call more than once.
func (h *RTTWatcher) Close() {
	if h.closed.Swap(true) {
		return
	}
	w := h.w
	w.subs.remove(h.ch)
	c := h.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.refs--; w.refs == 0 {
		w.cancel()
		if c.rtt == w {
			c.rtt = nil
		}
	}
}

// hasCoordinates reports whether every agent's client can list node
// coordinates.
func (a *agents) hasCoordinates() bool {
	for _, r := range a.regs {
		if _, ok := r.(beacon.NodeCoordinateLister); !ok {
			return false
		}
	}
	return true
}
