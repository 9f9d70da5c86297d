package balancer

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"time"
)

// Option configures the Weighted and P2C balancers (NewWeighted, NewP2C).
type Option func(*options)

type options struct{ ramp ramp }

// Slow start's defaults, Envoy's: a linear ramp from 10 % of the weight.
const (
	DefaultSlowStartAggression = 1.0
	DefaultSlowStartMinWeight  = 0.1
)

// WithSlowStart ramps up the share of each newly started instance over
// window: while it ramps, an endpoint counts as its weight times a factor
// growing from the minimum weight (WithSlowStartMinWeight, default 10 %)
// to 1 over the window, linearly unless WithSlowStartAggression says
// otherwise, as Envoy's slow start. A window of zero or less turns slow
// start off, the default.
//
// When an instance's ramp starts (Endpoint.RampStart): when a Set built
// from a previous Set first holds it (NewSet's prev), that is, when the
// caller first sees it passing; for the instances of a first Set (a nil or
// empty prev, as when the caller starts), only when the instance publishes
// its start time (beacon.MetaStarted, see keeper.WithStartedMeta), from
// that time, so that a caller that restarts does not ramp every warm
// instance again. An instance that leaves the Set and comes back (it
// failed its checks, or was deregistered) ramps again. An instance that
// first appears in a panicking snapshot's Set (discovery's panic threshold)
// does not ramp: panic asks for every instance's capacity at once.
//
// Slow start costs nothing when no endpoint of the Set is ramping: a pick
// then reads one more word of the Set (atomically) than without slow
// start, and no clock (after one pick has found the ramps over). While one
// ramps, a pick reads the clock; Weighted then draws at random in
// proportion to the ramped weights, in O(n), instead of its smooth round
// robin, and P2C draws each of its two candidates in proportion to the
// ramp factors (see NewP2C). Without it, NewWeighted and NewP2C return
// the balancers they did before slow start existed.
func WithSlowStart(window time.Duration) Option {
	return func(o *options) { o.ramp.window = max(int64(window), 0) }
}

// WithSlowStartAggression shapes the ramp as Envoy's aggression does: the
// factor is (elapsed/window)^(1/a), so a above 1 ramps faster at first and
// below 1 slower. The default, 1, is linear; a NaN, infinite, zero or
// negative a counts as 1.
func WithSlowStartAggression(a float64) Option {
	return func(o *options) {
		if !(a > 0) || math.IsInf(a, 0) {
			a = DefaultSlowStartAggression
		}
		o.ramp.aggression = a
	}
}

// WithSlowStartMinWeight sets the factor a ramp starts from, as a fraction
// of the weight (default 0.1, Envoy's 10 %), so that a new instance gets
// some calls from the start. It is clamped to [0, 1]; NaN counts as the
// default.
func WithSlowStartMinWeight(f float64) Option {
	return func(o *options) {
		if math.IsNaN(f) {
			f = DefaultSlowStartMinWeight
		}
		o.ramp.min = min(max(f, 0), 1)
	}
}

func newOptions(opts []Option) options {
	o := options{ramp: ramp{aggression: DefaultSlowStartAggression, min: DefaultSlowStartMinWeight}}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// ramp is a balancer's slow start; a zero window turns it off.
type ramp struct {
	window     int64   // nanoseconds
	aggression float64 // 1: linear
	min        float64 // factor at the start, in [0, 1]
}

// nowNano is the clock ramps are measured by: wall-clock nanoseconds, as
// beacon.MetaStarted is wall-clock seconds. Tests replace it.
var nowNano = func() int64 { return time.Now().UnixNano() }

// ramping reports whether an endpoint of s may be ramping, and then the
// time to compute factors at. Balancers call it only when s.settled is
// below r.window (checked inline, so that the steady state costs no call):
// it reads the clock, and when it finds s's ramps over it records so, and
// later picks from s read no clock.
func (r *ramp) ramping(s *Set) (now int64, ok bool) {
	now = nowNano()
	if age := now - s.rampLatest; age >= r.window {
		s.settle(age)
		return 0, false
	}
	return now, true
}

// factor returns the share of its weight an endpoint whose ramp started
// at start (0: never) counts for at now, in [r.min, 1].
func (r *ramp) factor(start, now int64) float64 {
	if start == 0 {
		return 1
	}
	el := now - start
	if el >= r.window {
		return 1
	}
	if el <= 0 {
		return r.min
	}
	f := float64(el) / float64(r.window)
	if r.aggression != 1 {
		f = math.Pow(f, 1/r.aggression)
	}
	return max(f, r.min)
}

// pickWeighted draws an endpoint of s at random, each with probability
// proportional to its weight times its ramp factor at now. It returns nil
// when every weight is 0, which Weighted's round robin handles.
func (r *ramp) pickWeighted(s *Set, now int64) *Endpoint {
	var total float64
	for _, e := range s.eps {
		if e.weight > 0 {
			total += float64(e.weight) * r.factor(e.load.start, now)
		}
	}
	if !(total > 0) {
		return nil
	}
	x := rand.Float64() * total
	var last *Endpoint
	for _, e := range s.eps {
		if e.weight <= 0 {
			continue
		}
		last = e
		if x -= float64(e.weight) * r.factor(e.load.start, now); x < 0 {
			return e
		}
	}
	return last // rounding left x at or just above 0
}

// maxRampDraws bounds the draws P2C makes for one candidate while
// endpoints ramp. Each is accepted with probability at least the minimum
// factor; with a minimum of 0 and every endpoint at its very start, the
// last draw is taken, which is still uniform among equals.
const maxRampDraws = 16

// drawRamped draws an index of s's endpoints with probability proportional
// to its ramp factor at now: uniformly, accepted with probability equal to
// the factor, redrawn otherwise (rejection sampling, bounded).
func (r *ramp) drawRamped(s *Set, now int64) int {
	n := uint64(len(s.eps))
	var i int
	for range maxRampDraws {
		hi, lo := bits.Mul64(rand.Uint64(), n)
		i = int(hi)
		f := r.factor(s.eps[i].load.start, now)
		// lo is close to uniform over the 64-bit words: accept with
		// probability f without drawing again.
		if f >= 1 || float64(lo>>11)*(1.0/(1<<53)) < f {
			return i
		}
	}
	return i
}
