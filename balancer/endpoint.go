package balancer

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
)

// Endpoint is one instance in a Set, with the state balancers keep for it.
//
// An Endpoint belongs to one Set and never changes: NewSet builds a new
// Endpoint for every instance, even one carried over from the previous Set,
// so that goroutines still reading the old Set never race with a refresh.
// What survives a refresh is the load state behind the Endpoint, shared by
// the old and the new Endpoint of the same instance. Identify instances
// across Sets with Instance.Key, not by pointer.
type Endpoint struct {
	// Instance points into the slice given to NewSet (nothing is copied:
	// a cache holding thousands of instances keeps one of each). Treat it
	// as read-only: other goroutines read it concurrently.
	Instance *beacon.Instance
	// Addr is net.JoinHostPort(Instance.Address, Instance.Port), ready to dial.
	Addr string

	weight int64 // Weighted's weight for this instance; see Weight
	load   *load // shared with this instance's Endpoints in earlier and later Sets
}

// load is the per-instance state that survives a refresh. It is not padded
// to a cache line: only P2C writes it, its picks read two counts anyway, and
// BenchmarkPickParallel/beacon-p2c measured no gain from padding, which would
// cost 48 bytes per watched instance.
type load struct {
	inflight atomic.Int64
	// start is when the instance's slow start ramp started (UnixNano), 0
	// for none: set by NewSet when it creates the load, then only read.
	start int64
}

// InFlight returns the number of P2C picks of this instance not yet Done,
// counted across every Set the instance has been carried through. Only P2C
// counts: picks by the other balancers leave it unchanged.
func (e *Endpoint) InFlight() int64 { return e.load.inflight.Load() }

// RampStart returns when this instance's slow start ramp started, as NewSet
// set it (see WithSlowStart): when a Set built from a previous one first
// held it, or the start time it published if it was in the caller's first
// Set. It is the zero Time when the instance never ramped (a warm instance
// of a first Set that published no start time); a start published long ago
// is returned as it is. Whether it is still ramping depends on each
// balancer's window.
func (e *Endpoint) RampStart() time.Time {
	if e.load.start == 0 {
		return time.Time{}
	}
	return time.Unix(0, e.load.start)
}

// Weight returns the weight NewWeighted gives this instance: Consul's
// Weights.Passing while Instance.Health is passing (or unset), Weights.Warning
// while it is warning, and 0 when it is critical or unknown. Zero Weights
// (Consul's "unset") count as 1 and 1; negative weights count as 0 and weights
// above 65535, the largest DNS SRV weight, as 65535. A weight of 0 means
// the instance is never picked by Weighted unless every instance in the Set
// has weight 0, in which case all are picked in turn. The Set of a
// discovery snapshot published in panic (discovery.Snapshot.Panic) weights
// every instance as passing, whatever its Health.
func (e *Endpoint) Weight() int { return int(e.weight) }

// count counts a request in flight on e and returns the pick that Done
// uncounts.
func (e *Endpoint) count() Picked {
	e.load.inflight.Add(1)
	return Picked{Endpoint: e, counted: true}
}

const maxWeight = math.MaxUint16

func weightOf(in beacon.Instance) int64 {
	w := in.Weights
	if w == (beacon.Weights{}) {
		w = beacon.Weights{Passing: 1, Warning: 1}
	}
	var v int
	switch in.Health {
	case beacon.HealthPassing, "":
		v = w.Passing
	case beacon.HealthWarning:
		v = w.Warning
	default: // critical, or a state nobody should trust
		return 0
	}
	return int64(min(max(v, 0), maxWeight))
}
