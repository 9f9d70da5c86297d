package balancer

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
)

// Set is an immutable-membership set of endpoints: the instances, their
// order and their weights are fixed when NewSet builds it; only the state
// balancers keep (requests in flight, Weighted's position) changes. A Set is
// safe for concurrent use by any number of goroutines. The zero Set and a nil
// *Set are empty.
type Set struct {
	eps []*Endpoint
	// anyHealth: weighted as if every instance passed (panic; see
	// internal/panicset); Without keeps it.
	anyHealth bool

	// Weighted's state lives here, shared by every Weighted picking from
	// this Set. When a whole cycle of the smooth weighted round robin is
	// short enough, it is precomputed into sched and a pick is one atomic
	// add; otherwise the algorithm runs under mu.
	//
	// The state is built at the first Weighted pick (or carried from prev
	// when prev had it), so Sets only other balancers read cost nothing
	// for it: a cache watching thousands of instances builds a Set per
	// snapshot.
	wReady atomic.Bool // the fields below are built
	wOnce  sync.Once

	sched []int32 // endpoint index for each step of one cycle; nil: use mu

	live  []int32 // endpoints with positive weight (all of them when none has)
	wts   []int64 // their weights divided by their greatest common divisor
	total int64   // sum of wts: the length of one cycle

	// Slow start's state (see WithSlowStart), after Weighted's so that
	// picks without slow start read the same lines as before it. rampLatest
	// is the latest ramp start of the endpoints (UnixNano; 0 when none has
	// one), fixed at NewSet. settled says that every ramp of a window up to
	// it has ended: picks by balancers with such windows read neither
	// clock nor factors. It only grows, and is written once per Set in
	// practice, when a pick first finds the ramps over.
	rampLatest int64
	settled    atomic.Int64

	_      [64]byte      // keep the written fields below off the line read by every Pick
	cursor atomic.Uint64 // steps taken through sched
	mu     sync.Mutex    // guards cur
	cur    []int64       // smooth weighted round robin's current weights, parallel to live
}

// Limits on the precomputed Weighted schedule: its length, and the work
// (length times endpoints) NewSet spends building it. Beyond either, Weighted
// runs the same algorithm under a mutex, with the same picks.
const (
	maxSchedule     = 1 << 12
	maxScheduleWork = 1 << 20
)

// NewSet builds a Set of insts, in their order. Endpoints point into insts,
// nothing is copied (a discovery cache builds a Set per snapshot and a copy
// would double its memory): the caller must not modify insts, or the tags
// and meta they hold, afterwards.
//
// prev, which may be nil, is the Set being replaced. An instance whose Key
// (node and ID) was in prev keeps its load: its new Endpoint shares the
// in-flight count of the old one, so a P2C pick's Done is counted whichever
// Set it came from. When every instance is at the same position, with the
// same Key and the same Weight, as in prev, Weighted carries on its sequence
// where prev left it; otherwise it starts a new cycle. prev stays valid and usable; it is only read.
//
// Each instance not in prev gets a ramp start for slow start (see
// WithSlowStart and Endpoint.RampStart): the time of this call when prev
// holds endpoints, since the instance is then new to the caller; when prev
// is nil or empty, the start time it publishes under beacon.MetaStarted
// (capped at now), or none, so that the first Set of a caller that has just
// started does not ramp instances that have served for long. Instances
// carried from prev keep theirs.
//
// Keys should be unique, as Consul makes them; if one repeats, only its
// first Endpoint inherits from prev.
func NewSet(insts []beacon.Instance, prev *Set) *Set { return newSet(insts, prev, false) }

// newSet is NewSet; with anyHealth, weights ignore health (panicset.NewSet).
func newSet(insts []beacon.Instance, prev *Set, anyHealth bool) *Set {
	var carried map[beacon.InstanceKey]*load
	first := prev == nil || len(prev.eps) == 0
	if !first {
		carried = make(map[beacon.InstanceKey]*load, len(prev.eps))
		for _, e := range prev.eps {
			k := e.Instance.Key()
			if _, dup := carried[k]; !dup {
				carried[k] = e.load
			}
		}
	}

	s := &Set{eps: make([]*Endpoint, len(insts)), anyHealth: anyHealth}
	backing := make([]Endpoint, len(insts))
	var now int64  // read at the first instance that needs it
	fresh := false // an endpoint's ramp starts in this Set
	for i, in := range insts {
		ld := carried[in.Key()]
		if ld != nil {
			delete(carried, in.Key())
		} else {
			ld = new(load)
			// A panicking Set needs every instance's capacity now: what
			// enters it does not ramp (see WithSlowStart).
			if start, ok := rampStart(in, first); ok && !anyHealth {
				if now == 0 {
					now = nowNano()
				}
				ld.start = min(start, now)
				if start >= now {
					fresh = true
				}
			}
		}
		if anyHealth {
			in.Health = beacon.HealthPassing // a copy: insts[i] keeps its health
		}
		s.rampLatest = max(s.rampLatest, ld.start)
		e := &backing[i]
		*e = Endpoint{
			Instance: &insts[i],
			Addr:     in.HostPort(),
			weight:   weightOf(in),
			load:     ld,
		}
		s.eps[i] = e
	}
	switch {
	case s.rampLatest == 0: // nothing ramps, whatever the window
		s.settled.Store(math.MaxInt64)
	case fresh:
		// a ramp starts now: no window has ended
	case !first && s.rampLatest <= prev.rampLatest:
		// the same ramps as prev's, or fewer: what prev found ended has
		s.settled.Store(prev.settled.Load())
	default:
		if now == 0 {
			now = nowNano()
		}
		s.settled.Store(max(now-s.rampLatest, 0))
	}
	if prev != nil && prev.wReady.Load() {
		s.buildWeighted(prev)
	}
	return s
}

// rampStart returns when a new endpoint for in starts ramping, in UnixNano:
// now (the largest int64, capped by the caller) after a first Set, the
// instance's published start in one.
func rampStart(in beacon.Instance, first bool) (int64, bool) {
	if !first {
		return math.MaxInt64, true
	}
	t, ok := beacon.StartedAt(in)
	switch {
	case !ok:
		return 0, false
	case t.Unix() >= math.MaxInt64/int64(time.Second): // past 2262: capped at now
		return math.MaxInt64, true
	}
	return t.UnixNano(), true
}

// subset returns a Set of eps, endpoints of s, sharing them rather than
// building new ones as NewSet does: their load, and the pointers an
// Ejection records by, stay the same. It carries what NewSet fixes per Set
// besides the endpoints: the panic weighting and slow start's ramps (a
// subset's latest ramp is no later than s's, so what s found ended has).
// Weighted's state is built at its first pick, as for any Set.
func (s *Set) subset(eps []*Endpoint) *Set {
	sub := &Set{eps: eps, anyHealth: s.anyHealth}
	for _, e := range eps {
		sub.rampLatest = max(sub.rampLatest, e.load.start)
	}
	if sub.rampLatest == 0 {
		sub.settled.Store(math.MaxInt64)
	} else {
		sub.settled.Store(s.settled.Load())
	}
	return sub
}

// settle records that the ramps of s have ended for windows up to age.
func (s *Set) settle(age int64) {
	for {
		cur := s.settled.Load()
		if age <= cur || s.settled.CompareAndSwap(cur, age) {
			return
		}
	}
}

// buildWeighted builds Weighted's state once.
func (s *Set) buildWeighted(prev *Set) {
	s.wOnce.Do(func() {
		s.initWeighted(prev)
		s.wReady.Store(true)
	})
}

// Len returns the number of endpoints in s; 0 for a nil Set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.eps)
}

// Endpoints returns the endpoints of s in the order given to NewSet. The
// slice is shared, not copied: do not modify it.
func (s *Set) Endpoints() []*Endpoint {
	if s == nil {
		return nil
	}
	return s.eps
}

// initWeighted prepares Weighted's state, carrying prev's over when the
// weights are the same.
func (s *Set) initWeighted(prev *Set) {
	if len(s.eps) == 0 {
		return
	}
	if prev.sameWeights(s) {
		s.live, s.wts, s.total = prev.live, prev.wts, prev.total
		if prev.sched != nil {
			s.sched = prev.sched // immutable, so shared
			s.cursor.Store(prev.cursor.Load())
			return
		}
		prev.mu.Lock()
		s.cur = append([]int64(nil), prev.cur...)
		prev.mu.Unlock()
		return
	}

	for i, e := range s.eps {
		if e.weight > 0 {
			s.live = append(s.live, int32(i))
			s.wts = append(s.wts, e.weight)
		}
	}
	if len(s.live) == 0 { // all weights 0: take turns
		for i := range s.eps {
			s.live = append(s.live, int32(i))
			s.wts = append(s.wts, 1)
		}
	}
	g := s.wts[0]
	for _, w := range s.wts[1:] {
		g = gcd(g, w)
	}
	for i := range s.wts {
		s.wts[i] /= g
		s.total += s.wts[i]
	}

	switch n := int64(len(s.live)); {
	case s.total == n: // equal weights: the cycle is the endpoints in order
		s.sched = s.live
	case s.total <= maxSchedule && s.total*n <= maxScheduleWork:
		s.cur = make([]int64, n)
		s.sched = make([]int32, s.total)
		for i := range s.sched {
			s.sched[i] = s.live[s.smooth()]
		}
		s.cur = nil
	default:
		s.cur = make([]int64, n)
	}
}

// sameWeights reports whether next has the same instances, in the same
// order and with the same weights, as s (which may be nil).
func (s *Set) sameWeights(next *Set) bool {
	if s == nil || len(s.eps) != len(next.eps) {
		return false
	}
	for i, e := range s.eps {
		n := next.eps[i]
		if e.weight != n.weight || e.Instance.ID != n.Instance.ID || e.Instance.Node != n.Instance.Node {
			return false
		}
	}
	return true
}

// smooth advances nginx's smooth weighted round robin by one step and
// returns the index in s.live of the chosen endpoint: every current weight
// grows by its weight, the largest (the first, on a tie) is chosen and falls
// back by the total. Over a cycle of s.total steps each endpoint is chosen as
// many times as its weight, spread as evenly as possible. The caller holds
// s.mu, or owns s.
func (s *Set) smooth() int {
	best := 0
	for i, w := range s.wts {
		s.cur[i] += w
		if s.cur[i] > s.cur[best] {
			best = i
		}
	}
	s.cur[best] -= s.total
	return best
}

// pickWeighted returns the next endpoint of the smooth weighted round robin.
// s is not empty.
func (s *Set) pickWeighted() *Endpoint {
	if !s.wReady.Load() {
		s.buildWeighted(nil)
	}
	if s.sched != nil {
		c := s.cursor.Add(1) - 1
		return s.eps[s.sched[c%uint64(len(s.sched))]]
	}
	s.mu.Lock()
	i := s.smooth()
	s.mu.Unlock()
	return s.eps[s.live[i]]
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Without returns the Set of s's endpoints for which skip is false, in
// order, sharing their per-instance state (requests in flight) with s. It
// returns s itself when skip drops nothing, and allocates a new Set
// otherwise. Filters such as Ejection and a retry's "not this instance
// again" are built on it.
func (s *Set) Without(skip func(*Endpoint) bool) *Set {
	eps := s.Endpoints()
	var rest []beacon.Instance
	for i, e := range eps {
		if skip(e) {
			if rest == nil {
				rest = make([]beacon.Instance, i, len(eps)-1)
				for j := range i {
					rest[j] = *eps[j].Instance
				}
			}
			continue
		}
		if rest != nil {
			rest = append(rest, *e.Instance)
		}
	}
	if rest == nil {
		return s
	}
	return newSet(rest, s, s.anyHealth)
}
