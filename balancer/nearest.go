package balancer

import (
	"cmp"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
)

// RTTSource gives Nearest the latest estimates of round-trip time from the
// caller's node to the nodes of the instances it picks from.
// discovery.RTTWatcher is one.
type RTTSource interface {
	// RTTs returns the latest table, or nil when none is known. It is
	// called on every Pick, so it must be cheap (an atomic load) and safe
	// for concurrent use; a new table must be a new pointer.
	RTTs() *beacon.NodeRTTs
}

// RTTFunc adapts a function to RTTSource.
type RTTFunc func() *beacon.NodeRTTs

// RTTs calls f.
func (f RTTFunc) RTTs() *beacon.NodeRTTs { return f() }

// DefaultNearestTolerance is how much farther than the nearest endpoint
// another may be and still share its traffic (WithNearestTolerance).
const DefaultNearestTolerance = time.Millisecond

// NearestOption adjusts NewNearest.
type NearestOption func(*nearest)

// WithNearestTolerance sets how much farther than the nearest endpoint another
// may be estimated and still be in the nearest group (default 1 ms):
// network coordinates are estimates, and instances on one rack or in one
// zone should share the load rather than all of it going to whichever
// estimate is lowest this minute. Negative counts as 0.
func WithNearestTolerance(d time.Duration) NearestOption {
	return func(n *nearest) { n.tol = max(d, 0) }
}

// WithNearestAtLeast makes the nearest group hold at least k endpoints
// (default 1), adding the next nearest ones beyond the tolerance, then those
// with no estimate, so that the nearest node's instances are not the only
// ones to take a service's traffic. Values below 1 count as 1. When inner
// does slow start, the k are warm endpoints (see NewNearest).
func WithNearestAtLeast(k int) NearestOption {
	return func(n *nearest) { n.atLeast = max(k, 1) }
}

// NewNearest returns a Balancer that sends traffic to the nearest
// endpoints: those whose node's estimated round-trip time from the
// caller's node (rtts) is within a tolerance of the lowest
// (WithNearestTolerance, WithNearestAtLeast); inner picks among them. An endpoint
// whose node has no estimate is never in the group unless WithNearestAtLeast
// asks for more endpoints than have one; when no endpoint has one (no
// table yet, coordinates disabled, instances in another datacenter, whose
// nodes are in another coordinate space), inner picks from the whole Set,
// as if there were no NewNearest.
//
// The group is a Set of its own, built with Set.Without from the Set
// picked from, so it shares the per-instance state (requests in flight):
// inner may be any Balancer, P2C included. It is built once per Set and
// RTT table and kept, for the four Sets last picked from (a Set and the
// filtered ones ejection and retries pass): a Pick from one of them with
// an unchanged table is one atomic load, a few comparisons and inner's
// pick, and allocates nothing. Give each service its own NewNearest, as
// its own Ejection, so that one service's Sets do not push another's out.
//
// When inner is a Weighted or P2C balancer with slow start
// (WithSlowStart), an endpoint still ramping up does not count as one of
// the nearest: the group is the one the warm endpoints make (the nearest
// warm one, those within the tolerance of it, at least WithNearestAtLeast
// warm ones), plus the ramping endpoints as near as it reaches, among
// which inner shares by ramp factor. A new instance alone on the nearest
// node thus ramps up beside the next nearest warm ones instead of taking
// all the traffic at once. The group is built again when the ramps end.
// While every endpoint ramps, ramps are ignored.
//
// A panicking Set (discovery's panic threshold, which offers every
// instance whatever its health) is not grouped: inner picks from all of
// it, as panic asks for every instance's capacity.
//
// It composes with filters: a Set less its ejected instances (Ejection)
// or less those a retry already tried (Set.Without) gets its own group,
// its nearest remaining endpoints, so a retry goes to the next nearest.
// Safe for concurrent use; Pick never blocks beyond inner's.
func NewNearest(inner Balancer, rtts RTTSource, opts ...NearestOption) Balancer {
	n := &nearest{inner: inner, src: rtts, tol: DefaultNearestTolerance, atLeast: 1}
	for _, f := range opts {
		f(n)
	}
	if n.inner == nil {
		n.inner = NewRoundRobin()
	}
	if n.src == nil {
		n.src = RTTFunc(func() *beacon.NodeRTTs { return nil })
	}
	if ss, ok := n.inner.(slowStarter); ok {
		n.window = ss.rampWindow()
	}
	return n
}

var _ Balancer = (*nearest)(nil)

type nearest struct {
	inner   Balancer
	src     RTTSource
	tol     time.Duration
	atLeast int
	window  int64 // inner's slow start window (UnixNano units); 0: none

	plans atomic.Pointer[nearPlans]
}

// nearPlans holds the groups last built, newest first. It is immutable
// once published; a miss publishes a new one.
type nearPlans [4]*nearPlan

// nearPlan is the nearest group of one Set under one RTT table.
type nearPlan struct {
	src  *Set
	rtts *beacon.NodeRTTs
	near *Set // src itself when every endpoint is in the group
	// until is when the ramps the group was built around end (UnixNano),
	// after which it is built again; 0 when none was ramping, and then a
	// pick reads no clock.
	until int64
}

// slowStarter is a balancer doing slow start (slowWeighted, slowP2C).
type slowStarter interface {
	rampWindow() int64
}

func (w *slowWeighted) rampWindow() int64 { return w.r.window }
func (p *slowP2C) rampWindow() int64      { return p.r.window }

func (n *nearest) Pick(s *Set) (Picked, error) {
	if s.Len() == 0 {
		return Picked{}, beacon.ErrNoInstances
	}
	if s.anyHealth { // panic: every instance's capacity, not the nearest's
		return n.inner.Pick(s)
	}
	t := n.src.RTTs()
	if t.Len() == 0 {
		return n.inner.Pick(s)
	}
	if ps := n.plans.Load(); ps != nil {
		for _, p := range ps {
			if p != nil && p.src == s && p.rtts == t {
				if p.until != 0 && nowNano() >= p.until {
					break // its ramps are over: build it again
				}
				return n.inner.Pick(p.near)
			}
		}
	}
	return n.inner.Pick(n.build(s, t).near)
}

// build makes s's group under t and publishes it in front of the others.
// Two callers building at once both publish; the last one's list wins,
// and the other's group is built again at a later miss, which is only
// work.
func (n *nearest) build(s *Set, t *beacon.NodeRTTs) *nearPlan {
	var now, until int64 // now: 0 unless an endpoint of s may be ramping
	if n.window > s.settled.Load() {
		now = nowNano()
		if age := now - s.rampLatest; age >= n.window {
			s.settle(age)
			now = 0
		} else if until = s.rampLatest + n.window; until < s.rampLatest {
			until = math.MaxInt64
		}
	}
	p := &nearPlan{src: s, rtts: t, near: nearestGroup(s, t, n.tol, n.atLeast, n.window, now), until: until}
	var next nearPlans
	next[0] = p
	if prev := n.plans.Load(); prev != nil {
		j := 1
		for _, q := range prev {
			// Plans under an older table will not be asked for again.
			if q != nil && q.rtts == t && q.src != s && j < len(next) {
				next[j] = q
				j++
			}
		}
	}
	n.plans.Store(&next)
	return p
}

// nearestGroup returns the Set of s's endpoints within tol of the lowest
// estimate under t, at least atLeast of them (nearest first, then those
// without an estimate), or s itself when that is all of them or none has
// an estimate. With now set, endpoints ramping at now (a ramp start less
// than window before) do not count: the tolerance runs from the nearest
// warm endpoint, atLeast counts warm ones, and ramping ones are in when
// they are no farther than that group reaches; unless every endpoint
// ramps, when ramps are ignored.
func nearestGroup(s *Set, t *beacon.NodeRTTs, tol time.Duration, atLeast int, window, now int64) *Set {
	type ranked struct {
		ep   *Endpoint
		rtt  time.Duration
		ok   bool
		warm bool
	}
	eps := s.Endpoints()
	rs := make([]ranked, len(eps))
	known, warm := 0, 0
	for i, e := range eps {
		d, ok := t.RTT(e.Instance.Node)
		w := now == 0 || e.load.start == 0 || now-e.load.start >= window
		rs[i] = ranked{e, d, ok, w}
		if ok {
			known++
		}
		if w {
			warm++
		}
	}
	if known == 0 {
		return s
	}
	if warm == 0 {
		for i := range rs {
			rs[i].warm = true
		}
	}
	// Nearest first; those without an estimate last, in Set order.
	slices.SortStableFunc(rs, func(a, b ranked) int {
		switch {
		case a.ok != b.ok:
			if a.ok {
				return -1
			}
			return 1
		case !a.ok:
			return 0
		}
		return cmp.Compare(a.rtt, b.rtt)
	})
	base := rs[0].rtt
	for _, r := range rs {
		if r.ok && r.warm {
			base = r.rtt
			break
		}
	}
	limit := base + tol
	if limit < base { // overflowed: everything is within
		limit = math.MaxInt64
	}
	k, in := 0, 0 // in: warm endpoints in the group
	for k < len(rs) && (in < atLeast || (rs[k].ok && rs[k].rtt <= limit)) {
		if rs[k].warm {
			in++
		}
		k++
	}
	if k == len(rs) {
		return s
	}
	keep := make(map[*Endpoint]bool, k)
	for _, r := range rs[:k] {
		keep[r.ep] = true
	}
	return s.Without(func(e *Endpoint) bool { return !keep[e] })
}
