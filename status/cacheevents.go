package status

import "github.com/beaconsd/beacon/discovery"

// EventSource is a cache that tells listeners what it sees as it
// happens; *discovery.Cache is one. With one, the timeline records each
// instance added, removed or changing health, each agent going down or
// coming back, each failover and each stale view repaired when it
// happens, instead of what the sampler infers from two samples.
type EventSource interface {
	Notify(func(discovery.Event)) (stop func())
}

var _ EventSource = (*discovery.Cache)(nil)

// listenCache subscribes the timeline to the cache's events, when it has
// them; Close unsubscribes.
func (h *Handler) listenCache() {
	src, ok := h.o.cache.(EventSource)
	if !ok {
		return
	}
	h.cacheLive = true
	h.unlisten = append(h.unlisten, src.Notify(func(e discovery.Event) { h.events.Record(fromCache(e)) }))
}

// fromCache turns a cache's event into the timeline's: the kinds share
// their names; a remote datacenter is named in the detail.
func fromCache(e discovery.Event) Event {
	d := e.Detail
	if e.Datacenter != "" {
		if d != "" {
			d += " "
		}
		d += "(in " + e.Datacenter + ")"
	}
	return Event{Time: e.Time, Kind: EventKind(e.Kind), Service: e.Service, Instance: e.Instance, Agent: address(e.Agent), Detail: d}
}
