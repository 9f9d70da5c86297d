package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
)

// Failover is where a watch of the local datacenter turns when that
// datacenter runs short of passing instances, and when it comes back.
//
// The remote datacenters are ordinary watches of the cache (blocking
// queries with ?dc= through the same agents), started only while the watch
// is failed over or about to be, and closed once the local datacenter has
// been healthy for HoldDown: each keeps the cache's promises (the last good
// snapshot through an outage, ACL-hidden detection, the long-poll budget).
type Failover struct {
	// Datacenters are tried in this order.
	Datacenters []string
	// NearestN adds, after Datacenters, the N datacenters nearest to the
	// local one by WAN round-trip time (Consul's network coordinates),
	// skipping the local one and those already listed. It needs a backend
	// that lists datacenters (beacon.DatacenterLister); without one, only
	// Datacenters are used and the watch logs why once.
	NearestN int
	// MinPassing is the number of passing local instances below which the
	// watch fails over (default 1: fail over when none passes). A remote
	// datacenter is chosen when it has at least MinPassing passing
	// instances; when none has, the first with any. Only passing
	// instances count, not those a snapshot in panic adds (see
	// WithPanicThreshold).
	MinPassing int
	// HoldDown is how long the local datacenter must have MinPassing
	// passing instances before the watch comes back to it (default 10 s),
	// so a flapping instance does not flip traffic back and forth.
	HoldDown time.Duration
}

// DefaultHoldDown is Failover.HoldDown's default.
const DefaultHoldDown = 10 * time.Second

// enabled reports whether p names anywhere to fail over to.
func (p Failover) enabled() bool { return len(p.Datacenters) > 0 || p.NearestN > 0 }

func (p Failover) withDefaults() Failover {
	if p.MinPassing <= 0 {
		p.MinPassing = 1
	}
	if p.HoldDown <= 0 {
		p.HoldDown = DefaultHoldDown
	}
	p.Datacenters = slices.Clone(p.Datacenters)
	return p
}

// Validate reports a policy Consul could not serve: an empty or malformed
// datacenter name, a datacenter listed twice, a negative count.
func (p Failover) Validate() error {
	if p.NearestN < 0 || p.MinPassing < 0 || p.HoldDown < 0 {
		return &beacon.ValidationError{Field: "Failover", Reason: "NearestN, MinPassing and HoldDown must not be negative"}
	}
	for i, dc := range p.Datacenters {
		if dc == "" {
			return &beacon.ValidationError{Field: "Failover.Datacenters", Reason: "an empty datacenter name"}
		}
		if err := beacon.ValidateDatacenter(dc); err != nil {
			return err
		}
		if slices.Contains(p.Datacenters[:i], dc) {
			return &beacon.ValidationError{Field: "Failover.Datacenters", Reason: fmt.Sprintf("%q listed twice", dc)}
		}
	}
	return nil
}

// key is p as part of a watch key: watches with different policies are
// different watches.
func (p Failover) key() string {
	return "\x00fo:" + strings.Join(p.Datacenters, ",") + "/" + strconv.Itoa(p.NearestN) + "/" +
		strconv.Itoa(p.MinPassing) + "/" + p.HoldDown.String()
}

// WithFailover gives every watch of the local datacenter this failover
// policy unless the watch names its own (FailOver) or none (NoFailover).
// Watches naming a datacenter (Query.Datacenter) never fail over.
func WithFailover(p Failover) Option { return func(o *options) { o.failover = p } }

// WatchOption adjusts one watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	failover    Failover
	setFailover bool
	panic       float64  // panic.go
	readPath    ReadPath // readpath.go
	pinPath     bool
}

// FailOver gives this watch its own failover policy.
func FailOver(p Failover) WatchOption {
	return func(o *watchOptions) { o.failover, o.setFailover = p, true }
}

// NoFailover keeps this watch in the local datacenter whatever the cache's
// default policy.
func NoFailover() WatchOption { return FailOver(Failover{}) }

// FailoverObserver is implemented by Metrics that also record failovers
// (prommetrics does). It is separate so existing Metrics keep compiling.
type FailoverObserver interface {
	// FailedOver reports that service's watch now serves datacenter dc,
	// "" when it came back to the local one.
	FailedOver(service, dc string)
}

// failoverState is what a failover watch shows in Stats.
type failoverState struct {
	policy    Failover               // as started; never written after
	serving   atomic.Pointer[string] // datacenter served; "" local
	failovers atomic.Int64           // times moved off the local datacenter
	since     atomic.Int64           // unix ns of the last move
	reason    atomic.Pointer[string] // why the last move
}

// startFailover starts a failover watch: a controller that follows the
// local watch of q and, when needed, watches of the policy's datacenters,
// and publishes one of them. Caller holds c.mu.
func (c *Cache) startFailover(key string, q beacon.Query, p Failover, panicAt float64, wo watchOptions) *watch {
	w := c.newWatch(key, q)
	p.Datacenters = slices.Clone(p.Datacenters) // the caller's slice stays the caller's
	w.fo, w.panicAt = &failoverState{policy: p}, panicAt
	w.readPath, w.pinPath = wo.readPath, wo.pinPath
	local := ""
	w.fo.serving.Store(&local)
	c.spawn(func() {
		f := &failoverRun{c: c, w: w, p: p, wake: make(chan struct{}, 1), remotes: map[string]*Watcher{}}
		f.run(w.ctx)
		w.once.Do(func() { close(w.ready) }) // stopped before any answer
	})
	return w
}

// failoverRun is one failover watch's controller; only its goroutine
// touches it.
type failoverRun struct {
	c    *Cache
	w    *watch
	p    Failover
	wake chan struct{} // subscribed to every child watch

	local   *Watcher
	remotes map[string]*Watcher // open only while failed over or about to be
	order   []string            // the datacenters to try, resolved when first needed
	serving string              // "" local

	healthySince time.Time // the local datacenter has had MinPassing passing since
	from         *Snapshot // the child snapshot last published
	noLister     bool      // NearestN without a lister was logged
}

// childOpts are the options of the watches a failover watch serves from:
// its panic threshold and its read path, if pinned.
func (f *failoverRun) childOpts() []WatchOption {
	opts := []WatchOption{NoFailover(), PanicThreshold(f.w.panicAt)}
	if f.w.pinPath {
		opts = append(opts, UseReadPath(f.w.readPath))
	}
	return opts
}

func (f *failoverRun) run(ctx context.Context) {
	q := f.w.q
	local, err := f.c.Watch(q, f.childOpts()...)
	if err != nil {
		return // the cache is closing
	}
	f.local = local
	local.w.addSub(f.wake)
	defer func() {
		for dc := range f.remotes {
			f.closeRemote(dc)
		}
		local.w.unsubscribe(f.wake)
		local.Close()
	}()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	for {
		if d := f.step(ctx, time.Now()); d > 0 {
			hold.Reset(d)
		}
		select {
		case <-ctx.Done():
			hold.Stop()
			return
		case <-f.wake:
		case <-hold.C:
		}
	}
}

// step decides what to serve and publishes it; it returns how long until
// the hold-down ends when one is running, else 0.
func (f *failoverRun) step(ctx context.Context, now time.Time) time.Duration {
	ls := f.local.Snapshot()
	if ls == nil {
		return 0 // the local watch has not answered or failed yet
	}
	answered := ls.Source != SourceNone
	localOK := answered && passing(ls) >= f.p.MinPassing
	if localOK {
		if f.healthySince.IsZero() {
			f.healthySince = now
		}
	} else {
		f.healthySince = time.Time{}
	}

	if f.serving == "" {
		if localOK || !answered {
			f.closeRemotes()
			f.publish(ls, "")
			return 0
		}
		// Short locally: watch the candidates and move to the best.
		f.openRemotes(ctx)
		if dc, s := f.best(passing(ls)); s != nil {
			f.move(dc, fmt.Sprintf("%d passing in the local datacenter, fewer than %d; %d in %s", passing(ls), f.p.MinPassing, passing(s), dc))
			f.publish(s, dc)
			return 0
		}
		if f.pending() {
			// A remote datacenter has not answered yet (a first answer
			// takes one WAN round trip): keep what callers have until it
			// does, rather than publish the local datacenter's empty
			// answer and fail every call for that moment.
			return 0
		}
		f.publish(ls, "")
		return 0
	}

	if localOK {
		left := f.p.HoldDown - now.Sub(f.healthySince)
		if left > 0 && f.servingHolds() {
			f.keepServing()
			return left
		}
		reason := fmt.Sprintf("%d passing in the local datacenter for %v", passing(ls), f.p.HoldDown)
		if left > 0 {
			reason = fmt.Sprintf("%d passing in the local datacenter, fewer than %d in %s", passing(ls), f.p.MinPassing, f.serving)
		}
		f.move("", reason)
		f.closeRemotes()
		f.publish(ls, "")
		return 0
	}
	f.openRemotes(ctx) // a datacenter added by NearestN since, or one closed
	if dc, s := f.best(passing(ls)); s != nil {
		if dc != f.serving {
			f.move(dc, fmt.Sprintf("%d passing in %s", passing(s), dc))
		}
		f.publish(s, dc)
		return 0
	}
	// No remote datacenter has a passing instance any more: the local one
	// is no worse.
	f.move("", "no passing instance in any failover datacenter")
	f.publish(ls, "")
	return 0
}

// keepServing republishes the datacenter served, as it changes.
func (f *failoverRun) keepServing() {
	if r := f.remotes[f.serving]; r != nil {
		if s := r.Snapshot(); s != nil {
			f.publish(s, f.serving)
		}
	}
}

// servingHolds reports whether the datacenter served still has MinPassing
// passing instances: during the hold-down the watch stays there only
// while it does.
func (f *failoverRun) servingHolds() bool {
	r := f.remotes[f.serving]
	if r == nil {
		return false
	}
	s := r.Snapshot()
	return s != nil && passing(s) >= f.p.MinPassing
}

// best returns the first candidate with MinPassing passing instances, else
// the first with more than the local datacenter's local passing ones.
func (f *failoverRun) best(local int) (string, *Snapshot) {
	var anyDC string
	var anySnap *Snapshot
	for _, dc := range f.order {
		r := f.remotes[dc]
		if r == nil {
			continue
		}
		s := r.Snapshot()
		if s == nil || s.Source == SourceNone {
			continue
		}
		n := passing(s)
		if n >= f.p.MinPassing {
			return dc, s
		}
		if n > local && anySnap == nil {
			anyDC, anySnap = dc, s
		}
	}
	return anyDC, anySnap
}

// pending reports whether a remote watch has neither answered nor failed
// yet, while the watch has published before (a first answer is never held
// back).
func (f *failoverRun) pending() bool {
	if f.w.snap.Load() == nil {
		return false
	}
	for _, dc := range f.order {
		if r := f.remotes[dc]; r != nil && r.Snapshot() == nil {
			return true
		}
	}
	return false
}

// openRemotes resolves the candidates and watches each not watched yet.
func (f *failoverRun) openRemotes(ctx context.Context) {
	if f.order == nil || len(f.remotes) == 0 {
		f.order = f.candidates(ctx)
	}
	for _, dc := range f.order {
		if f.remotes[dc] != nil {
			continue
		}
		q := f.w.q
		q.Datacenter = dc
		r, err := f.c.Watch(q, f.childOpts()...)
		if err != nil {
			return // the cache is closing
		}
		r.w.addSub(f.wake)
		f.remotes[dc] = r
	}
}

// candidates lists the datacenters to try: the policy's, then the
// nearest; never the local one (a policy shared by every datacenter's
// callers may name it).
func (f *failoverRun) candidates(ctx context.Context) []string {
	local := f.c.localDatacenter(ctx)
	order := slices.DeleteFunc(slices.Clone(f.p.Datacenters), func(dc string) bool { return dc == local })
	if f.p.NearestN == 0 {
		return order
	}
	near, err := f.c.nearest(ctx)
	if err != nil {
		if !f.noLister {
			f.noLister = true
			f.c.o.logger.Warn("discovery: failover: cannot list the nearest datacenters; using the listed ones", "service", f.w.q.Service, "err", err)
		}
		return order
	}
	added := 0
	for _, dc := range near {
		if added == f.p.NearestN {
			break
		}
		if !slices.Contains(order, dc) {
			order = append(order, dc)
			added++
		}
	}
	return order
}

func (f *failoverRun) closeRemotes() {
	for dc := range f.remotes {
		f.closeRemote(dc)
	}
}

func (f *failoverRun) closeRemote(dc string) {
	r := f.remotes[dc]
	r.w.unsubscribe(f.wake)
	r.Close()
	delete(f.remotes, dc)
}

// move records a change of the datacenter served.
func (f *failoverRun) move(dc, reason string) {
	if dc == f.serving {
		return
	}
	from := f.serving
	f.serving = dc
	fo := f.w.fo
	fo.serving.Store(&dc)
	fo.reason.Store(&reason)
	fo.since.Store(time.Now().UnixNano())
	if dc != "" && from == "" {
		fo.failovers.Add(1)
	}
	if m, ok := f.c.o.metrics.(FailoverObserver); ok {
		m.FailedOver(f.w.q.Service, dc)
	}
	switch {
	case dc == "":
		f.c.o.logger.Info("discovery: failing back to the local datacenter", "service", f.w.q.Service, "from", from, "reason", reason)
	default:
		f.c.o.logger.Warn("discovery: failing over", "service", f.w.q.Service, "from", dcName(from), "to", dc, "reason", reason)
	}
}

func dcName(dc string) string {
	if dc == "" {
		return "local"
	}
	return dc
}

// publish makes s, from datacenter dc ("" local), the failover watch's
// snapshot, unless it already is.
func (f *failoverRun) publish(s *Snapshot, dc string) {
	w := f.w
	if s == f.from {
		return
	}
	prev := w.snap.Load()
	var next *Snapshot
	if prev != nil && f.from != nil && sameSlice(f.from.Instances, s.Instances) && prev.Datacenter == dc {
		// The child refreshed (index, age, error) without new instances:
		// keep the Set and its balancer state.
		n := *prev
		n.Source, n.Index, n.Updated, n.Err = s.Source, s.Index, s.Updated, s.Err
		next = &n
	} else {
		next = newSnapshot(s.Service, s.Source, s.Instances, prev, s.Index, s.Updated)
		next.Err = s.Err
		if s.Panic {
			markPanic(next)
		}
	}
	next.Datacenter, next.FailedOver = dc, dc != ""
	if prev != nil && prev.Datacenter != dc {
		f.c.events.Emit(Event{Time: time.Now(), Kind: EventFailedOver, Service: w.q.Service, Datacenter: dc, Detail: dcName(prev.Datacenter) + " → " + dcName(dc)})
	}
	f.from = s
	child := f.local
	if dc != "" {
		child = f.remotes[dc]
	}
	w.pst.Store(child.w.pst.Load())           // Stats shows the panic state of the datacenter served
	w.errSince.Store(child.w.errSince.Load()) // and when its error began
	w.path.Store(child.w.path.Load())
	w.agentCache.Store(child.w.agentCache.Load())
	if b, ok := child.w.backend.Load().(beacon.QueryBackend); ok {
		w.backend.Store(b) // Stats shows the read path of the datacenter served
	}
	w.snap.Store(next)
	w.once.Do(func() { close(w.ready) })
	w.notify()
}

func sameSlice(a, b []beacon.Instance) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// passing counts s's passing instances.
func passing(s *Snapshot) int { return countPassing(s.Instances) }

// nearest lists the other datacenters nearest first, when the current
// agent's backend can list them (beacon.DatacenterLister).
func (c *Cache) nearest(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	dcs, err := c.agents.nearestDatacenters(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range dcs {
		if !d.Local {
			out = append(out, d.Name)
		}
	}
	return out, nil
}

// localDatacenter returns the local datacenter's name, asking the agent
// the first time (bounded by the request timeout); "" when it cannot
// tell, and then it asks again next time.
func (c *Cache) localDatacenter(ctx context.Context) string {
	if name := c.local.Load(); name != nil {
		return *name
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	name, err := c.agents.localDatacenter(ctx)
	if err != nil || name == "" {
		return ""
	}
	c.local.Store(&name)
	return name
}

// knownLocal returns the local datacenter's name if it is known, and
// otherwise starts learning it in the background and returns "". Caller
// holds c.mu (so the cache is not closed while it spawns).
func (c *Cache) knownLocal() string {
	if name := c.local.Load(); name != nil {
		return *name
	}
	if c.learning.CompareAndSwap(false, true) {
		c.spawn(func() {
			defer c.learning.Store(false)
			c.localDatacenter(c.ctx)
		})
	}
	return ""
}

var errNoLister = errors.New("the backend does not list datacenters")
