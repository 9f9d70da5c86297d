// Package balancer picks one instance of a service for each request.
//
// # Where the pickable set lives, and who filters it
//
// A Set is built from one answer from Consul by NewSet, passing the previous
// Set so that per-instance state (requests in flight, the weighted round
// robin's position) survives the refresh. The discovery cache does not
// build it when Consul answers: discovery.Snapshot.Set builds it at the
// first pick from that snapshot, once, so consumers that never pick (the
// gRPC resolver, beacon watch, metrics) never pay for it. That Set is the
// one pickable set of a snapshot; everything that narrows it is a filter
// in this package, returning a Set that shares the per-instance state:
//
//   - Set.Without: a Set less some endpoints (a retry's "not this instance
//     again").
//   - Ejection: a Set less the instances whose connections keep failing,
//     for a while (outlier ejection; httpclient reports each attempt to it).
//
// Changing how instances are ejected or skipped means reading this package
// only. Callers load the current Set, filter it if they must, and hand it
// to a Balancer:
//
//	p, err := b.Pick(set)
//	if err != nil {
//		return err // beacon.ErrNoInstances
//	}
//	defer p.Done()
//	dial(p.Addr)
//
// Four balancers are provided:
//
//   - NewRoundRobin: each endpoint in turn; exact shares.
//   - NewRandom: uniformly at random.
//   - NewWeighted: smooth weighted round robin over Consul's Weights, which
//     follow each instance's health; optional slow start.
//   - NewP2C: power of two choices, the less loaded of two random endpoints;
//     adapts to slow instances without any tuning; optional slow start.
//
// NewNearest composes with any of them: nearest first. The endpoints on the
// nodes with the lowest estimated round-trip time from the caller's (an
// RTTSource, such as discovery.RTTWatcher), within a tolerance, form a Set
// of their own, built once per Set and RTT table, and the inner balancer
// picks from it; without estimates, or in a panicking Set, from the whole
// Set. With a slow-starting inner balancer, ramping endpoints do not count
// toward the group: they ramp beside the nearest warm ones.
//
// ZoneAware wraps any of them to prefer instances in the caller's zone (an
// instance's zone is its service or node meta, see beacon.Instance.Zone),
// spilling to other zones as Envoy's zone-aware routing does when the
// caller's zone has fewer instances than its share of the callers
// (Callers, a CallerSource). Its inner balancer picks within the chosen
// zone from a sub-Set holding the Set's own Endpoints, so in-flight counts
// and Ejection's records stay shared. It computes the split once per Set
// and allocates nothing per pick.
//
// A pick is a Picked: the Endpoint, embedded, and a Done to call exactly once
// when the request ends. Only P2C counts requests in flight (see
// Endpoint.InFlight), so only its picks pay for an atomic add and its Done
// for another; for the other balancers Done does nothing, and picking from
// many goroutines writes nothing shared but the balancer's own position.
//
// Pick takes a few nanoseconds and allocates nothing. Balancers, Sets and
// Endpoints are safe for concurrent use by any number of goroutines; a Set's
// membership never changes once built.
//
// # Slow start
//
// NewWeighted and NewP2C take options; WithSlowStart(window) ramps up the
// share of a newly started instance over window, as Envoy's slow start
// does: while it ramps, an endpoint counts as its weight times a factor
// that grows linearly from 10 % (WithSlowStartMinWeight) to 1, or along
// (elapsed/window)^(1/aggression) with WithSlowStartAggression:
//
//	b := balancer.NewP2C(balancer.WithSlowStart(30 * time.Second))
//
// A ramp's start is kept per instance, with its requests in flight, so it
// survives refreshes; Endpoint.RampStart tells it. An instance ramps from
// the moment a Set built from a previous one first holds it (for a
// discovery cache, the first pick after the answer that brought it: it
// passed its checks, or joined). The instances of a first Set (NewSet with
// a nil or empty prev: the caller has just started) ramp only if they
// publish their start time under beacon.MetaStarted (keeper.WithStartedMeta
// does), from that time: a caller that restarts neither ramps its whole
// fleet again nor skips the ramp of an instance that has just started. An
// instance that leaves the Set (it failed its checks) and comes back ramps
// again from its return. One that first enters a Set built for a
// panicking snapshot (discovery's panic threshold, which serves critical
// instances when too few pass) does not ramp: panic wants every
// instance's capacity at once.
//
// Slow start costs nothing while nothing ramps: the Set records its latest
// ramp start, and a pick reads no clock once a pick has found the ramps
// over for a window as long as its balancer's. While an endpoint ramps,
// each pick reads the clock, and Weighted draws at random in proportion to
// the ramped weights (O(n), not its round robin), P2C draws each candidate
// in proportion to the ramp factors.
//
// Limits. The start is the caller's first sight, not Consul's passing time:
// a discovery cache builds a snapshot's Set at its first pick, carrying
// state from the last Set built, so an instance's ramp starts at the first
// pick after the cache saw it; a caller that stops picking (and closes its
// last watch of the service) starts a new lineage, whose first Set is
// treated as a restart. A published start is the keeper's creation, not
// the moment the instance first passed: a caller that restarts during a
// ramp ramps the instance from that earlier time. Clocks are compared
// across machines; a start in the future counts as now.
//
// Balancers do not filter by health: that is the query's job (by default the
// discovery cache asks Consul for passing instances only). Only Weighted looks
// at Instance.Health, because Consul's weights depend on it.
package balancer
