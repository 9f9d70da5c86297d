package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
)

// Source says where a snapshot's instances come from, and so whether
// Consul has answered the watch yet.
type Source int

const (
	// SourceNone: Consul has not answered the watch yet, and no snapshot
	// file had it. Instances is empty, Updated is zero, and Err says what
	// the last attempt met.
	SourceNone Source = iota
	// SourceConsul: Instances is Consul's answer; with Err set, the last
	// good one, served while Consul cannot be asked.
	SourceConsul
	// SourceFile: Consul has not answered the watch in this process yet;
	// Instances and Updated were read from the snapshot file (see
	// WithSnapshotFile), and Err says what the last attempt met.
	SourceFile
)

func (s Source) String() string {
	switch s {
	case SourceNone:
		return "none"
	case SourceConsul:
		return "consul"
	case SourceFile:
		return "file"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Snapshot is one published answer. It is immutable: never modify it or the
// slices and maps it holds.
type Snapshot struct {
	Service string
	// Source says where Instances come from; SourceNone until Consul
	// first answers (or a snapshot file stands in for it).
	Source    Source
	Instances []beacon.Instance
	// Index is Consul's X-Consul-Index of the answer.
	Index uint64
	// Updated is when Consul last answered this watch (for SourceFile,
	// when it answered the process that saved it); zero for SourceNone.
	Updated time.Time
	// Err is the last error since then; nil while the snapshot is fresh.
	Err error
	// Datacenter served Instances: the one the query names, or the one a
	// failover watch failed over to; "" is the local datacenter.
	Datacenter string
	// FailedOver: a failover watch serves another datacenter because the
	// local one has too few passing instances (see Failover).
	FailedOver bool
	// Panic: too few of the instances pass (see WithPanicThreshold), so
	// Instances holds every instance not in maintenance, whatever its
	// Health, and the Set weights them all as passing.
	Panic bool

	// p builds the balancer.Set of Instances at the first pick; snapshots
	// with the same Instances share it.
	p *pickable
}

// Age is how long ago Consul last answered; meaningless for SourceNone.
func (s *Snapshot) Age() time.Duration { return time.Since(s.Updated) }

// Set returns Instances ready for a balancer. It is built at the first call,
// not when Consul answers, so consumers that never pick (a gRPC resolver,
// a status page) never pay for it; later calls are an atomic load. A Set
// built from a later snapshot carries over the state balancers keep per
// instance (requests in flight, Weighted's position, slow start's ramp
// start) from the last Set built before it (see balancer.NewSet); an
// instance it does not carry starts its slow start ramp then. The first
// Set of a watch carries nothing: its instances ramp only from the start
// they publish (beacon.MetaStarted). A Snapshot made other than by a
// Cache (a literal in a test) has none: its Set is nil, which balancers
// treat as empty.
func (s *Snapshot) Set() *balancer.Set {
	if set := s.p.load(); set != nil {
		return set
	}
	return s.p.build()
}

// pickable is a Set not built yet, or built.
type pickable struct {
	insts []beacon.Instance
	// anyHealth: build a Set that weights every instance as passing
	// (a snapshot in panic).
	anyHealth bool
	set       atomic.Pointer[balancer.Set]
	// prev is the last Set built before this one was published, to carry
	// state from; cleared once set is built, so snapshots never chain.
	prev atomic.Pointer[balancer.Set]
	once sync.Once
}

// load returns the Set if it is built.
func (p *pickable) load() *balancer.Set {
	if p == nil { // a Snapshot not published by a Cache
		return nil
	}
	return p.set.Load()
}

// build builds the Set once and returns it.
func (p *pickable) build() *balancer.Set {
	if p == nil { // a Snapshot not published by a Cache
		return nil
	}
	p.once.Do(func() {
		if p.anyHealth {
			p.set.Store(newPanicSet(p.insts, p.prev.Load()))
		} else {
			p.set.Store(balancer.NewSet(p.insts, p.prev.Load()))
		}
		p.prev.Store(nil)
	})
	return p.set.Load()
}

// built returns the Set to carry state from when replacing p: p's own if
// it was built, else the one p itself would have carried from.
func (p *pickable) built() *balancer.Set {
	if p == nil {
		return nil
	}
	if s := p.set.Load(); s != nil {
		return s
	}
	prev := p.prev.Load()
	if s := p.set.Load(); s != nil { // built meanwhile, which cleared prev
		return s
	}
	return prev
}

// newSnapshot returns a snapshot of insts replacing prev (which may be nil).
func newSnapshot(service string, src Source, insts []beacon.Instance, prev *Snapshot, index uint64, updated time.Time) *Snapshot {
	p := &pickable{insts: insts}
	if prev != nil {
		p.prev.Store(prev.p.built())
	}
	return &Snapshot{Service: service, Source: src, Instances: insts, Index: index, Updated: updated, p: p}
}

// failed returns s, still serving its instances, marked with err.
func (s *Snapshot) failed(err error) *Snapshot {
	n := *s
	n.Err = err
	return &n
}

// refreshed returns s, unchanged, answered again by Consul at index.
func (s *Snapshot) refreshed(index uint64, now time.Time) *Snapshot {
	n := *s
	n.Index, n.Updated = index, now
	return &n
}

// Snapshot returns the latest snapshot, or nil before the watch's first
// attempt ended. It takes no lock and touches no network.
func (w *Watcher) Snapshot() *Snapshot { return w.w.snap.Load() }

// Pick picks an endpoint from the latest snapshot with b: no lock, no
// network, and no allocation but the Set's, once per change of the
// instances. Before Consul's first answer it returns beacon.ErrNoInstances;
// use Wait first when that matters. Call the pick's Done exactly once when
// the request ends.
func (w *Watcher) Pick(b balancer.Balancer) (balancer.Picked, error) {
	s := w.w.snap.Load()
	if s == nil {
		return balancer.Picked{}, beacon.ErrNoInstances
	}
	return pick(s, b)
}

// pick picks from s; an empty snapshot with an error says why it is empty.
func pick(s *Snapshot, b balancer.Balancer) (balancer.Picked, error) {
	if len(s.Instances) == 0 && s.Err != nil {
		return balancer.Picked{}, fmt.Errorf("%w for %q: %w", beacon.ErrNoInstances, s.Service, s.Err)
	}
	return b.Pick(s.Set())
}

// Changed receives a value after the snapshot changed; load it with Snapshot.
func (w *Watcher) Changed() <-chan struct{} {
	if ch, ok := w.ch.Load().(chan struct{}); ok {
		return ch
	}
	return w.makeChanged()
}

// makeChanged makes the handle's channel at the first Changed, with the
// wake-up of any change since the handle was made (see newWatcher).
func (w *Watcher) makeChanged() chan struct{} {
	s := &w.w.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := w.ch.Load().(chan struct{}); ok {
		return ch // made meanwhile
	}
	ch := make(chan struct{}, 1)
	if w.missed || s.sent != w.sent {
		ch <- struct{}{}
	}
	if !w.closed.Load() {
		s.chs = append(s.chs, ch)
	}
	w.ch.Store(ch)
	return ch
}

// Wait returns the first snapshot with instances to serve (Source is not
// SourceNone), waiting for it as long as ctx allows. When the first attempt
// failed instead, it returns that error; when it failed because no agent
// could be reached, the error is an *UnreachableError, which matches
// beacon.ErrUnavailable. So does the error returned when ctx ends while
// every agent is down.
func (w *Watcher) Wait(ctx context.Context) (*Snapshot, error) {
	// With every agent down the watch's loop waits for one to come back
	// without asking, so it reports no error of its own (and ready stays
	// open): say so as soon as that is the case, not at ctx's end. A
	// snapshot file stands in for Consul, so then ready is waited for.
	var allDown <-chan struct{}
	if !w.c.hasSaved(w.w.key) {
		allDown = w.c.agents.whenAllDown()
	}
	for answered := false; !answered; {
		select {
		case <-w.w.ready:
			answered = true
		case <-allDown:
			select {
			case <-w.w.ready: // answered as the last agent went down
				answered = true
				continue
			default:
			}
			if err := w.c.unreachable(w.w.q.Service, nil); err != nil {
				return nil, err
			}
			allDown = w.c.agents.whenAllDown() // one came back meanwhile
		case <-ctx.Done():
			if err := w.c.unreachable(w.w.q.Service, nil); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("discovery: waiting for %q: %w", w.w.q.Service, ctx.Err())
		}
	}
	s := w.w.snap.Load()
	if s == nil {
		return nil, ErrClosed
	}
	if s.Source == SourceNone && s.Err != nil {
		if errors.Is(s.Err, beacon.ErrUnavailable) {
			if err := w.c.unreachable(w.w.q.Service, s.Err); err != nil {
				return s, err
			}
		}
		return s, s.Err
	}
	return s, nil
}
