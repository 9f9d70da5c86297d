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
//     follow each instance's health.
//   - NewP2C: power of two choices, the less loaded of two random endpoints;
//     adapts to slow instances without any tuning.
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
// Balancers do not filter by health: that is the query's job (by default the
// discovery cache asks Consul for passing instances only). Only Weighted looks
// at Instance.Health, because Consul's weights depend on it.
package balancer
