package discovery

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/internal/panicset"
)

// The panic threshold (Envoy's "panic threshold", Nacos' "protect
// threshold"): when too few of a service's instances pass, the few that do
// would take all the traffic and fall in turn; spreading it over every
// instance not in maintenance, failing ones included, loses some calls
// instead of all of them.
//
// A watch with a threshold p asks Consul for every instance (no ?passing;
// the streaming backend serves that too) and decides on the client, from
// each answer alone, after dedupe (a stale copy of an instance would
// count twice): with P passing instances among the N not in maintenance,
// it publishes the P passing ones while P ≥ p·N, and otherwise, in panic,
// all N, whatever their health, with Snapshot.Panic set; it leaves panic
// at the first answer where P ≥ p·N again. N = 0 (no instance, or all in
// maintenance) is not panic: there is nothing to spread over. With a
// threshold the no-passing policy never applies: P = 0 < p·N is panic,
// which publishes the warning instances and the critical ones too.

// WithPanicThreshold gives every watch of a service a panic threshold p in
// (0, 1]: when fewer than p of the instances not in maintenance pass, the
// watch publishes all of them, whatever their health, and marks the
// snapshot Panic; it goes back to the passing ones as soon as their share
// is p again. Balancers then spread calls over every published instance
// (the snapshot's Set weights them all as passing). 0, the default, is
// off; a watch can set or clear its own with PanicThreshold. Watches that
// ask for every instance anyway (Query.IncludeUnhealthy) and prepared-
// query watches have no threshold. New refuses p outside [0, 1] with a
// *beacon.ValidationError. See the package doc for how it combines with
// WithNoPassingPolicy and failover. The threshold is part of a watch's
// identity, so a snapshot file (WithSnapshotFile) saved under one
// threshold is not served to a watch with another after a restart.
func WithPanicThreshold(p float64) Option { return func(o *options) { o.panic = p } }

// PanicThreshold gives this watch its own panic threshold (see
// WithPanicThreshold); 0 turns it off for this watch whatever the cache's.
// Watch refuses p outside [0, 1] with a *beacon.ValidationError.
func PanicThreshold(p float64) WatchOption {
	return func(o *watchOptions) { o.panic = p }
}

// validatePanic refuses a threshold outside [0, 1] (NaN included).
func validatePanic(p float64) error {
	if !(p >= 0 && p <= 1) {
		return &beacon.ValidationError{Field: "PanicThreshold", Reason: "want a share in [0, 1] (0: off), got " + strconv.FormatFloat(p, 'g', -1, 64)}
	}
	return nil
}

// panicKey is a threshold as part of a watch key: watches with different
// thresholds publish different instances.
func panicKey(p float64) string {
	if p == 0 {
		return ""
	}
	return "\x00panic:" + strconv.FormatFloat(p, 'g', -1, 64)
}

// PanicObserver is implemented by Metrics that also record panics
// (prommetrics does). It is separate so existing Metrics keep compiling.
type PanicObserver interface {
	// Panic reports that a watch of service entered panic (on) or left it.
	// A failover watch reports nothing itself: the watches it is made of
	// (one per datacenter) do.
	Panic(service string, on bool)
}

// panicState is what a watch with a threshold shows in Stats.
type panicState struct {
	on     atomic.Bool
	panics atomic.Int64 // times entered
	since  atomic.Int64 // unix ns of the last entry or exit
}

// verdict is the panic policy's count over one answer.
type verdict struct {
	panic   bool
	passing int // passing instances
	up      int // instances not in maintenance
}

// panicPolicy applies threshold p to insts, deduped: in panic every
// instance not in maintenance, else the passing ones. It returns insts
// itself when it keeps them all.
func panicPolicy(p float64, insts []beacon.Instance) ([]beacon.Instance, verdict) {
	var v verdict
	for i := range insts {
		if insts[i].Health == beacon.HealthPassing {
			v.passing++
		}
		if !insts[i].Maintenance {
			v.up++
		}
	}
	// The share as a quotient: the division rounds the exact share to the
	// double nearest it, as the threshold's literal was, so a share equal to
	// the threshold (0.07 of 100 is 7) is not panic; p*up would round
	// differently (0.07*100 is 7.000000000000001).
	v.panic = v.up > 0 && float64(v.passing)/float64(v.up) < p
	keep := func(in *beacon.Instance) bool { return in.Health == beacon.HealthPassing }
	if v.panic {
		keep = func(in *beacon.Instance) bool { return !in.Maintenance }
	}
	n := v.passing
	if v.panic {
		n = v.up
	}
	if n == len(insts) {
		return insts, v
	}
	out := make([]beacon.Instance, 0, n)
	for i := range insts {
		if keep(&insts[i]) {
			out = append(out, insts[i])
		}
	}
	return out, v
}

// newPanicSet is balancer.NewSet weighting every instance as passing.
var newPanicSet = panicset.NewSet.(func([]beacon.Instance, *balancer.Set) *balancer.Set)

// markPanic marks s, not yet published, as published in panic: Panic is
// set and its Set weights every instance as passing.
func markPanic(s *Snapshot) {
	s.Panic = true
	s.p.anyHealth = true
}

// notePanic records w's move into or out of panic, if v is one: Stats,
// the log and PanicObserver. Caller holds w.pubMu.
func (c *Cache) notePanic(w *watch, v verdict) {
	ps := w.pst.Load()
	if ps == nil || ps.on.Load() == v.panic {
		return
	}
	ps.on.Store(v.panic)
	ps.since.Store(time.Now().UnixNano())
	if v.panic {
		ps.panics.Add(1)
		c.o.logger.Warn("discovery: panic: too few passing instances; spreading calls over every instance not in maintenance",
			"service", w.q.Service, "datacenter", dcName(w.q.Datacenter), "passing", v.passing, "instances", v.up, "threshold", w.panicAt)
	} else {
		c.o.logger.Info("discovery: leaving panic: enough passing instances again",
			"service", w.q.Service, "datacenter", dcName(w.q.Datacenter), "passing", v.passing, "instances", v.up, "threshold", w.panicAt)
	}
	if m, ok := c.o.metrics.(PanicObserver); ok {
		m.Panic(w.q.Service, v.panic)
	}
}

// panicStats fills st's panic fields from w.
func panicStats(st *WatchStats, w *watch, s *Snapshot) {
	st.PanicThreshold = w.panicAt
	if s != nil {
		st.Panic = s.Panic
	}
	if ps := w.pst.Load(); ps != nil {
		st.Panics = ps.panics.Load()
		if ns := ps.since.Load(); ns != 0 {
			st.PanicSince = time.Unix(0, ns)
		}
	}
}
