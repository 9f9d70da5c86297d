package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/backoff"
	"github.com/beaconsd/beacon/internal/notify"
)

// Consul up to 1.15 publishes a change event before committing it
// (hashicorp/consul#16871), and its streaming publisher drops events for
// services nobody subscribes to: a service's first streaming subscriber
// can snapshot the old state and never get the event. The agent keeps that
// view for re-blocks (old index, old body at each timeout; later changes
// arrive at higher indexes without the lost one), and ?cached, ?index=1 and
// a new filter are served from it or from the same stale snapshot. Only a
// plain read (no index, no cache) goes past it.
//
// The stale guard bounds how long a watch can serve such a view:
//
//   - every watch is verified once with a plain read, settle after its
//     first blocking query (a watch with its own loop, whatever backend
//     answers: the query may be answered only when its wait ends) or its
//     first ?cached answer not from the blocking-query backend (a feed
//     watch), and again after every restart of its loop from index 0 (an
//     error, an index reset, a move to another agent);
//   - the change feed's blocking query (feed.go: the service summaries, or
//     every check) is the tripwire for the rest of a watch's life: when it
//     says a service changed, that service's watches are verified settle
//     later, unless by then a watch has answered at or past the index of
//     the feed's answer (its view is at least as new: checkAt);
//   - a backstop verifies every guarded watch once per backstopPeriods wait
//     periods, spread evenly, for what touches no check (tags, meta) and
//     for other datacenters, which the feed does not see.
//
// A verification that differs from the watch is read again grace later
// (a change still propagating is not a stale view); if it still differs,
// the plain read is published and the watch moves off the view: it blocks
// with near=_agent, which the agent serves without streaming, for viewTTL,
// by which time the agent has dropped the idle view.
type staleGuard struct {
	life    *lifetime
	src     beacon.Lookup
	publish func(*watch, result) error
	metrics Metrics
	log     *slog.Logger
	events  *notify.Set[Event] // the cache's Notify listeners, told of each repair
	// settle: from the event to the verification; grace: from a
	// verification that differs to the second read. Both from the bound.
	settle, grace time.Duration
	backstop      time.Duration // each guarded watch verified once per backstop

	// reads bounds the plain reads in flight: a node's health flapping
	// marks every service on it changed at once, and an agent refuses a
	// client past 200 connections.
	reads chan struct{}

	mu      sync.Mutex
	watches map[*watch]struct{} // guarded watches, for the backstop
	started bool
}

// viewTTL is how long a repaired watch stays off the streaming backend:
// an idle view lives 20 minutes in Consul 1.14, plus a margin.
const viewTTL = 25 * time.Minute

// maxReads is the plain reads the guard has in flight at once: part of
// the cache's room for short reads beside its long polls (shortConns).
const maxReads = 4

// maxRounds bounds the verifications one event starts while the service
// keeps changing under a watch that differs from it.
const maxRounds = 5

// backstopPeriods: the backstop verifies each guarded watch once per this
// many wait periods, so it adds at most 1/backstopPeriods request per
// watched service per wait period.
const backstopPeriods = 10

// nearAgent is the near= value that keeps the agent off its streaming backend.
const nearAgent = "_agent"

// errMovedOff ends a request made on the view a watch has just left; the
// loop asks again from index 0 on the new one. It is never published.
var errMovedOff = errors.New("discovery: watch moved off its streaming view")

// StaleViewCounter is implemented by Metrics that also count stale views
// (prommetrics does): watches found serving an agent's stale streaming
// view and repaired. It is separate so existing Metrics keep compiling.
type StaleViewCounter interface {
	StaleView(service string)
}

// WithStaleBound sets how long, beyond Consul's own propagation, a watch
// may serve a stale streaming view before it is found and repaired
// (default 10 s; see docs/architecture.md). Verifications run bound/7
// after the event that calls for one, and a difference is confirmed
// bound/10 later. Zero turns the guard off.
func WithStaleBound(d time.Duration) Option { return func(o *options) { o.staleBound = d } }

func newStaleGuard(life *lifetime, src beacon.Lookup, publish func(*watch, result) error, bound, wait time.Duration, m Metrics, log *slog.Logger, events *notify.Set[Event]) *staleGuard {
	if bound <= 0 {
		return nil
	}
	return &staleGuard{life: life, src: src, publish: publish, metrics: m, log: log, events: events,
		settle: bound / 7, grace: bound / 10, backstop: backstopPeriods * wait, watches: map[*watch]struct{}{},
		reads: make(chan struct{}, maxReads)}
}

// guarded reports whether w can be served from a streaming view: a long
// poll of its own, or agent-cached reads (feed watches otherwise make
// plain reads, which never are).
func guarded(w *watch) bool {
	// A failover or prepared-query watch reads nothing itself: its parts
	// are the watches guarded.
	return w.fo == nil && w.prepared == "" && (w.ownLoop || w.q.Cached)
}

// add puts w under the backstop; remove takes it out.
func (g *staleGuard) add(w *watch) {
	if g == nil || !guarded(w) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.watches[w] = struct{}{}
	if !g.started {
		g.started = true
		g.life.spawn(g.sweep)
	}
}

func (g *staleGuard) remove(w *watch) {
	if g == nil {
		return
	}
	g.mu.Lock()
	delete(g.watches, w)
	g.mu.Unlock()
}

// answered is told of every answer of a watch: it records the backend,
// and verifies settle later a fresh answer (the feed's first ?cached read
// of a watch) that is not from the blocking-query backend. Own loops call
// check themselves, at their first blocking query (fetchFor).
func (g *staleGuard) answered(w *watch, meta beacon.QueryMeta, fresh bool) {
	w.backend.Store(meta.Backend)
	w.setCacheStatus(meta)
	if g != nil && fresh && meta.Backend != beacon.QueryBackendBlockingQuery && !w.offStream() && w.streams() {
		g.check(w, "first answer")
	}
}

// changed is the tripwire: the change feed saw these services change in
// its answer at index.
func (g *staleGuard) changed(ws []*watch, index uint64) {
	if g == nil {
		return
	}
	for _, w := range ws {
		if guarded(w) && !w.offStream() && w.streams() {
			g.checkAt(w, "change feed", max(index, 1))
		}
	}
}

// mustRead, as a watch's tripAt, asks its next verification to read
// whatever the watch's index: the verification was asked for by something
// other than the tripwire (a first answer, the backstop, a round that
// found the service still changing).
const mustRead = math.MaxUint64

// check verifies w settle from now with a plain read.
func (g *staleGuard) check(w *watch, why string) { g.checkAt(w, why, mustRead) }

// checkAt verifies w settle from now, unless a verification is already
// pending: then that one goes round again, so no event is lost and at
// most one verification per watch is in flight (under churn, one per
// settle). index is the change feed's answer that asked for it (mustRead
// for any other reason; 0 adds no reason): when the round comes and every
// reason pending is the tripwire's, and the watch has already answered at
// or past the highest such index, its view is at least as new as the
// feed's and the plain read is skipped. (A view that lost a change and
// then got a later change of the same service before the round is at such
// an index too: the backstop finds it; see docs/architecture.md.)
func (g *staleGuard) checkAt(w *watch, why string, index uint64) {
	raise(&w.tripAt, index)
	w.reverify.Store(true)
	if !w.verifying.CompareAndSwap(false, true) {
		return
	}
	g.life.spawn(func() {
		// Bounded by the events that ask for a round and by the watch's life.
		for rounds := 1; w.reverify.Swap(false); rounds++ {
			if !backoff.Sleep(w.ctx, g.settle) {
				break
			}
			if at := w.tripAt.Swap(0); at != mustRead && answeredPast(w, at) {
				continue
			}
			if g.verify(w, why) && rounds < maxRounds {
				raise(&w.tripAt, mustRead)
				w.reverify.Store(true)
			}
		}
		w.verifying.Store(false)
		if w.reverify.Load() && w.ctx.Err() == nil { // asked between the last round and now
			g.checkAt(w, why, 0) // its reasons are in tripAt already
		}
	})
}

// answeredPast reports whether w's snapshot is an answer from Consul at
// index or later.
func answeredPast(w *watch, index uint64) bool {
	s := w.snap.Load()
	return s != nil && s.Err == nil && s.Source == SourceConsul && s.Index >= index
}

// raise sets a to v if v is higher.
func raise(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// sweep is the backstop: every guarded watch once per backstop, spread evenly.
func (g *staleGuard) sweep() {
	sweepEvenly(g.life.ctx, &g.mu, g.watches, g.backstop, func(w *watch) {
		if w.ctx.Err() == nil && !w.offStream() && w.streams() {
			g.check(w, "backstop")
		}
	})
}

// verify compares w's snapshot with a plain read and repairs w when the
// difference is a stale view, not Consul's own propagation or the watch's
// rate limit: grace later, a second plain read still differs from the
// snapshot, and either the watch has had a blocking query in flight all
// along from an index the first read had already passed (a live view
// answers such a query at once), or the service stood still between the
// two reads (a live watch catches up within grace). A service that keeps
// changing and whose watch keeps answering is verified again, settle
// later (it reports again), until one of the two holds, the views agree,
// or maxRounds rounds went by: the tripwire and the backstop look again.
func (g *staleGuard) verify(w *watch, why string) (again bool) {
	cur := w.snap.Load()
	if cur == nil || cur.Err != nil || cur.Source != SourceConsul {
		return false // no answer to check: the loop's next first answer is
	}
	first, meta1, err := g.read(w)
	if err != nil || sameView(w, cur.Instances, first) {
		return false // an error is the loop's to report
	}
	readAt := time.Now()
	if !backoff.Sleep(w.ctx, g.grace) {
		return false
	}
	cur = w.snap.Load()
	if cur == nil || cur.Err != nil || cur.Source != SourceConsul {
		return false
	}
	insts, meta, err := g.read(w)
	if err != nil || sameView(w, cur.Instances, insts) {
		return false // Consul's own propagation caught up
	}
	a := w.asking.Load()
	stuck := a != nil && a.index < meta1.LastIndex && a.since.Before(readAt)
	still := sameInstances(sortedByKey(dedupe(applyPolicy(w, first))), sortedByKey(dedupe(applyPolicy(w, insts))))
	if !stuck && !still {
		return true // still changing: look again once it settles
	}
	g.repair(w, cur.Index, insts, meta, why)
	_ = g.publish(w, result{Instances: insts, Meta: meta}) // an error is recorded in the snapshot
	return false
}

// repair moves w off its stale view and counts and logs it; the caller
// publishes the plain read (insts, meta). watchIndex is the index the
// watch had from the view.
func (g *staleGuard) repair(w *watch, watchIndex uint64, insts []beacon.Instance, meta beacon.QueryMeta, why string) {
	w.moveOff(time.Now().Add(viewTTL))
	w.staleViews.Add(1)
	if sc, ok := g.metrics.(StaleViewCounter); ok {
		sc.StaleView(w.q.Service)
	}
	g.log.Warn("discovery: stale streaming view; published a plain read and moved the watch off the view",
		"service", w.q.Service, "watch_index", watchIndex, "read_index", meta.LastIndex,
		"read_instances", len(applyPolicy(w, insts)), "found_by", why)
	g.events.Emit(Event{Time: time.Now(), Kind: EventStaleViewRepaired, Service: w.q.Service, Datacenter: w.q.Datacenter,
		Detail: fmt.Sprintf("index %d → %d, found by %s", watchIndex, meta.LastIndex, why)})
}

// behind is called by a watch's loop when the streaming backend answered
// below the index the loop asked from: a view behind the agent's own
// state, or the agent's state reset. A plain read tells which; when it is
// at or past index and holds other instances, the view is stale: w moves
// off it and the plain read takes the answer's place (ok). Synchronous, so
// the view's answer is never published (the loop would otherwise publish
// it, reset to index 0, read the truth, block on the view again and flip
// between the two at every timeout).
func (g *staleGuard) behind(w *watch, index uint64, got []beacon.Instance, gotMeta beacon.QueryMeta) (insts []beacon.Instance, meta beacon.QueryMeta, ok bool) {
	if g == nil {
		return nil, beacon.QueryMeta{}, false
	}
	insts, meta, err := g.read(w)
	if err != nil || meta.LastIndex < index || sameView(w, dedupe(applyPolicy(w, got)), insts) {
		return nil, beacon.QueryMeta{}, false
	}
	g.repair(w, gotMeta.LastIndex, insts, meta, "index went backwards")
	return insts, meta, true
}

// read is the plain read: no index, no agent cache, so no streaming view.
func (g *staleGuard) read(w *watch) ([]beacon.Instance, beacon.QueryMeta, error) {
	q := w.q
	q.Cached, q.WaitIndex, q.WaitTime, q.Near = false, 0, 0, ""
	select {
	case g.reads <- struct{}{}:
		defer func() { <-g.reads }()
	case <-w.ctx.Done():
		return nil, beacon.QueryMeta{}, w.ctx.Err()
	}
	g.metrics.Request(w.q.Service)
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	return g.src.Instances(ctx, q)
}

// sameView reports whether a plain read, after w's policy, holds what
// the snapshot holds, in any order (near=_agent sorts by distance).
func sameView(w *watch, snap, read []beacon.Instance) bool {
	// Snapshots hold one copy per endpoint (dedupe.go): so must the read,
	// or every copy in the catalog would look like a stale view.
	return sameInstances(sortedByKey(snap), sortedByKey(dedupe(applyPolicy(w, read))))
}

// sortedByKey returns insts sorted by node and ID, copying only if they
// are not already.
func sortedByKey(insts []beacon.Instance) []beacon.Instance {
	cmpKey := func(a, b beacon.Instance) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	}
	if slices.IsSortedFunc(insts, cmpKey) {
		return insts
	}
	out := slices.Clone(insts)
	slices.SortFunc(out, cmpKey)
	return out
}

// moveOff sends w's queries past the streaming backend until until: the
// request in flight on the stale view is ended, and any answer from it
// that is still on its way is refused (its generation is old).
func (w *watch) moveOff(until time.Time) {
	w.offUntil.Store(until.UnixNano())
	w.gen.Add(1)
	w.abortMu.Lock()
	if w.abort != nil {
		w.abort(errMovedOff)
	}
	w.abortMu.Unlock()
}

// offStream reports whether w's queries avoid the streaming backend now.
func (w *watch) offStream() bool {
	u := w.offUntil.Load()
	return u != 0 && time.Now().UnixNano() < u
}

// mode returns w's generation and whether its next query avoids the
// streaming backend; once a move off has run its time, w goes back on,
// in a new generation.
func (w *watch) mode() (gen uint64, off bool) {
	if u := w.offUntil.Load(); u != 0 && time.Now().UnixNano() >= u && w.offUntil.CompareAndSwap(u, 0) {
		w.gen.Add(1)
	}
	return w.gen.Load(), w.offStream()
}

// setAbort records how to end w's request in flight (nil: none).
func (w *watch) setAbort(f context.CancelCauseFunc) {
	w.abortMu.Lock()
	w.abort = f
	w.abortMu.Unlock()
}
