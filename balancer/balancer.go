package balancer

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"

	"github.com/beaconsd/beacon"
)

// Balancer picks one endpoint from a set.
//
// Pick returns beacon.ErrNoInstances for an empty or nil Set, and otherwise
// an endpoint of s, as a Picked, and a nil error. Call the Picked's Done
// exactly once when the request ends, whatever the balancer: P2C counts
// the request in flight on the endpoint until then, and for the others Done
// does nothing. Pick does not block (Weighted may take a short mutex on large
// weights), allocates nothing, and is safe for concurrent use, including with
// NewSet reading s as prev.
type Balancer interface {
	Pick(s *Set) (Picked, error)
}

// Picked is one pick: the endpoint and, for balancers that count requests
// in flight (P2C), the obligation to call Done. It is a small value, returned
// and passed by copy; compare picks, or key maps, by Picked.Endpoint.
type Picked struct {
	*Endpoint
	counted bool
}

// Done ends the request started by the pick. Call it exactly once per
// successful Pick, whatever the balancer: for P2C it takes the request off
// the endpoint's in-flight count (shared across refreshes, so it is correct
// even when the Set has been replaced meanwhile), and for the balancers that
// do not count it does nothing. Calling it more than once on a P2C pick
// makes the count wrong (it may go negative). Done on the zero Picked, as
// returned with an error, does nothing.
func (p Picked) Done() {
	if p.counted {
		p.load.inflight.Add(-1)
	}
}

var (
	_ Balancer = (*roundRobin)(nil)
	_ Balancer = random{}
	_ Balancer = weighted{}
	_ Balancer = (*slowWeighted)(nil)
	_ Balancer = p2c{}
	_ Balancer = (*slowP2C)(nil)
)

// NewRoundRobin returns a Balancer that picks the endpoints of a Set in
// turn. The position is an atomic counter in the Balancer, not in the Set:
// it carries on across refreshes (modulo the new Set's size), and one
// Balancer picking from one Set gives every endpoint exactly its share,
// however many goroutines pick. Lock-free.
func NewRoundRobin() Balancer { return new(roundRobin) }

type roundRobin struct{ next atomic.Uint64 }

func (r *roundRobin) Pick(s *Set) (Picked, error) {
	if s == nil || len(s.eps) == 0 {
		return Picked{}, beacon.ErrNoInstances
	}
	i := (r.next.Add(1) - 1) % uint64(len(s.eps))
	return Picked{Endpoint: s.eps[i]}, nil
}

// NewRandom returns a Balancer that picks an endpoint uniformly at random,
// drawing from math/rand/v2's global source (per-thread, lock-free).
// Stateless and lock-free.
func NewRandom() Balancer { return random{} }

type random struct{}

func (random) Pick(s *Set) (Picked, error) {
	if s == nil || len(s.eps) == 0 {
		return Picked{}, beacon.ErrNoInstances
	}
	i, _ := bits.Mul64(rand.Uint64(), uint64(len(s.eps)))
	return Picked{Endpoint: s.eps[i]}, nil
}

// NewWeighted returns a Balancer running nginx's smooth weighted round robin
// over the endpoints' weights (see Endpoint.Weight, which follows Consul's
// Weights and each instance's health). Over one cycle, as many picks as the
// weights' sum (divided by their greatest common divisor), every endpoint is
// picked exactly as many times as its weight, interleaved as evenly as
// possible: weights 5, 1, 1 give a a b a c a a. Weight 0 is never picked,
// unless every weight is 0; then the endpoints are picked in turn. With
// Consul's default weights this is round robin.
//
// The position in the cycle lives in the Set, so every Weighted picking from
// one Set shares one sequence, and the Balancer itself keeps only its
// options (none without slow start). NewSet precomputes the cycle when the weights are all equal or
// the cycle is at most 4096 picks long, and then a pick is one atomic add,
// lock-free; otherwise a pick takes a per-Set mutex around a loop over the
// endpoints, with the same results.
//
// With WithSlowStart, while an endpoint of the Set ramps up, picks are
// drawn at random instead, each endpoint with probability proportional to
// its weight times its ramp factor: the shares are the weights' over many
// picks, not exact per cycle. The round robin resumes when the ramps end.
func NewWeighted(opts ...Option) Balancer {
	// Without slow start, the balancer of before it: not even a field to read.
	if o := newOptions(opts); o.ramp.window > 0 {
		return &slowWeighted{r: o.ramp}
	}
	return weighted{}
}

type weighted struct{}

func (weighted) Pick(s *Set) (Picked, error) {
	if s == nil || len(s.eps) == 0 {
		return Picked{}, beacon.ErrNoInstances
	}
	return Picked{Endpoint: s.pickWeighted()}, nil
}

// slowWeighted is Weighted with slow start.
type slowWeighted struct{ r ramp }

func (w *slowWeighted) Pick(s *Set) (Picked, error) {
	if s == nil || len(s.eps) == 0 {
		return Picked{}, beacon.ErrNoInstances
	}
	if w.r.window > s.settled.Load() { // something may ramp: see ramping
		if now, ok := w.r.ramping(s); ok {
			if e := w.r.pickWeighted(s, now); e != nil {
				return Picked{Endpoint: e}, nil
			}
		}
	}
	return Picked{Endpoint: s.pickWeighted()}, nil
}

// NewP2C returns a Balancer using the power of two choices: it draws two
// distinct endpoints at random and picks the one with fewer requests in
// flight (either one on a tie). It is the only balancer that counts
// requests in flight: each pick adds one to the endpoint's count (see
// Endpoint.InFlight) until the Picked's Done. It steers load away from slow
// or stuck instances without any configuration, provided callers call Done. The
// in-flight counts are read without a lock, so concurrent picks may both
// see the same counts; that is the algorithm's usual trade. Stateless and
// lock-free.
//
// With WithSlowStart, while an endpoint of the Set ramps up, each of the two
// candidates is drawn with probability proportional to its ramp factor
// (drawn uniformly and kept with probability equal to its factor, redrawn
// otherwise, at most 16 times), independently of the other; when both
// draws are the same endpoint it is picked. With equal loads the shares
// are then exactly proportional to the factors; an endpoint with fewer
// requests in flight than the others, as a ramping one tends to be under
// concurrency, wins more of its comparisons, as P2C intends, and gets a
// little more than that. Consul's weights play no part in P2C.
func NewP2C(opts ...Option) Balancer {
	// Without slow start, the balancer of before it: not even a field to read.
	if o := newOptions(opts); o.ramp.window > 0 {
		return &slowP2C{r: o.ramp}
	}
	return p2c{}
}

type p2c struct{}

func (p2c) Pick(s *Set) (Picked, error) {
	n := s.Len()
	switch n {
	case 0:
		return Picked{}, beacon.ErrNoInstances
	case 1:
		return s.eps[0].count(), nil
	}
	i, j := twoOf(n)
	return lessLoaded(s.eps[i], s.eps[j]).count(), nil
}

// slowP2C is P2C with slow start.
type slowP2C struct{ r ramp }

func (p *slowP2C) Pick(s *Set) (Picked, error) {
	if s.Len() > 1 && p.r.window > s.settled.Load() { // something may ramp: see ramping
		if now, ok := p.r.ramping(s); ok {
			i, j := p.r.drawRamped(s, now), p.r.drawRamped(s, now)
			return lessLoaded(s.eps[i], s.eps[j]).count(), nil
		}
	}
	return p2c{}.Pick(s) // nothing ramps: P2C as without slow start
}

// lessLoaded returns whichever of a and b has fewer requests in flight; a
// on a tie (the draws' order is random).
func lessLoaded(a, b *Endpoint) *Endpoint {
	if b.load.inflight.Load() < a.load.inflight.Load() {
		return b
	}
	return a
}

// twoOf returns two distinct indices in [0, n), n ≥ 2, drawn from a single
// random word with Lemire's multiply-shift: the high half of r·n is the first
// index, and the low half, itself close to uniform, yields the second. The
// bias, about n²/2⁶⁴, is far below anything a load balancer could notice,
// and one draw instead of two halves the cost of a P2C pick.
func twoOf(n int) (i, j int) {
	hi, lo := bits.Mul64(rand.Uint64(), uint64(n))
	hj, _ := bits.Mul64(lo, uint64(n-1))
	i, j = int(hi), int(hj)
	if j >= i {
		j++
	}
	return i, j
}
