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

// cacheKinds maps the cache's event kinds to the timeline's. The strings
// are the same; the table keeps them from drifting apart unseen (a test
// checks every kind the cache has).
var cacheKinds = map[discovery.EventKind]EventKind{
	discovery.EventInstanceAdded:     InstanceAdded,
	discovery.EventInstanceRemoved:   InstanceRemoved,
	discovery.EventHealthChanged:     HealthChanged,
	discovery.EventInstancesChanged:  InstancesChanged,
	discovery.EventAgentDown:         AgentDown,
	discovery.EventAgentUp:           AgentUp,
	discovery.EventFailedOver:        FailedOver,
	discovery.EventStaleViewRepaired: StaleViewRepaired,
	discovery.EventTokenRotated:      TokenRotated,
}

// fromCache turns a cache's event into the timeline's; a remote
// datacenter is named in the detail.
func fromCache(e discovery.Event) Event {
	kind, ok := cacheKinds[e.Kind]
	if !ok {
		kind = EventKind(e.Kind) // a kind newer than this table
	}
	d := e.Detail
	if e.Datacenter != "" {
		if d != "" {
			d += " "
		}
		d += "(in " + e.Datacenter + ")"
	}
	return Event{Time: e.Time, Kind: kind, Service: e.Service, Instance: e.Instance, Agent: address(e.Agent), Detail: d}
}
