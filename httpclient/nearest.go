package httpclient

import (
	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/discovery"
)

// WithNearest sends each request to one of the instances nearest to the
// caller: those on the nodes with the lowest estimated round-trip time
// from the node of the cache's agent, within a tolerance (see
// balancer.NewNearest and its options, given here). The balancer of
// WithBalancer, or round robin, picks among them. Estimates come from
// Consul's network coordinates, watched by the cache (discovery.WatchRTTs)
// from the Transport's first request until Close; health queries keep
// the agent's streaming backend. Until the first estimates arrive, when
// the backend cannot list coordinates, and for instances served from
// another datacenter (a failover), every instance is picked as without
// this option.
//
// It composes with ejection and retries: an ejected nearest instance
// leaves the group to the next nearest ones, and a retry goes to the
// nearest instance not tried yet. With a slow-starting balancer
// (balancer.WithSlowStart), a new instance ramps up beside the nearest
// warm ones rather than taking the nearest group alone; in panic
// (discovery.WithPanicThreshold), every instance is picked from.
func WithNearest(opts ...balancer.NearestOption) Option {
	return func(o *options) { o.nearest, o.nearOpts = true, opts }
}

// nearestFor wraps bal, the balancer of the service watched by w, in a
// nearest-first one reading the Transport's RTT watch, which it starts
// when it is the first. The caller holds t.mu.
func (t *Transport) nearestFor(bal balancer.Balancer, w *discovery.Watcher) balancer.Balancer {
	if t.rtts == nil && !t.noRTTs {
		h, err := t.cache.WatchRTTs()
		if err != nil {
			t.o.logger.Warn("httpclient: no RTT estimates; nearest-first picks from every instance", "err", err)
			t.noRTTs = true
		}
		t.rtts = h
	}
	h := t.rtts
	return balancer.NewNearest(bal, balancer.RTTFunc(func() *beacon.NodeRTTs {
		if h == nil {
			return nil
		}
		if s := w.Snapshot(); s != nil && s.Datacenter != "" {
			return nil // nodes of another datacenter: no estimate from here
		}
		return h.RTTs()
	}), t.o.nearOpts...)
}
