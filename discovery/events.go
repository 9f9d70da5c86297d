package discovery

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/beaconsd/beacon"
)

// EventKind says what the cache saw happen. The values are stable: the
// status page shows them and its JSON carries them.
type EventKind string

// The kinds of Event a Cache reports to Notify's listeners.
const (
	// EventInstanceAdded, EventInstanceRemoved and EventHealthChanged are
	// one instance's change in what a watch publishes (Instance is its
	// ID), not in the catalog: on a watch of passing instances (the
	// default) an instance that fails its check is removed, and one that
	// passes again is added; EventHealthChanged comes from watches that
	// publish other health too (IncludeUnhealthy, panic). A watch's first
	// answer reports its instances as added.
	EventInstanceAdded   EventKind = "instance_added"
	EventInstanceRemoved EventKind = "instance_removed"
	EventHealthChanged   EventKind = "health_changed"
	// EventInstancesChanged sums up an answer that changed more than
	// MaxInstanceEvents instances, instead of one event each.
	EventInstancesChanged EventKind = "instances_changed"
	// EventAgentDown and EventAgentUp: the cache marked an agent down
	// (Detail says why: the watchdog's verdict or a transport error) or
	// found it answering again.
	EventAgentDown EventKind = "agent_down"
	EventAgentUp   EventKind = "agent_up"
	// EventFailedOver: a failover watch moved to another datacenter, or
	// back (Detail "local → dc2"), or a prepared query was answered from
	// another datacenter than before.
	EventFailedOver EventKind = "failover"
	// EventStaleViewRepaired: the stale guard found a streaming view
	// behind the catalog and published a plain read.
	EventStaleViewRepaired EventKind = "stale_view_repaired"
	// EventTokenRotated: the token file (consul.Config.TokenFile) holds a
	// new token, seen within a few seconds; neither token is in the event.
	EventTokenRotated EventKind = "token_rotated"
)

// MaxInstanceEvents is the most per-instance events one published answer
// gives; an answer that changed more (a first snapshot of a large service,
// a redeploy) gives one EventInstancesChanged event, so one service cannot push
// everything else off a bounded timeline.
const MaxInstanceEvents = 10

// Event is one thing the cache saw happen.
type Event struct {
	Time time.Time
	Kind EventKind
	// Service is the watched service, or a prepared query's reference
	// with QuerySuffix; Datacenter is the watch's ("" the local one).
	Service    string
	Datacenter string
	// Instance is the instance's ID, for the per-instance kinds.
	Instance string
	// Agent is the agent's address, for EventAgentDown and EventAgentUp.
	Agent string
	// Detail is a short sentence: an instance's address and health, a
	// health change ("passing → critical"), why an agent is down.
	Detail string
}

// Notify calls f for each Event from now on, until stop is called (stop
// may be called more than once; an event being delivered meanwhile may
// still reach f once). f runs on the goroutine that saw the event: a
// watch's, holding that watch's publish lock, or the agents' watchdog
// and probes or the token file's follower, holding no lock. So f must
// return at once; it may read the cache (Stats, Agents, a Watcher's
// Snapshot) but must not wait on it (Wait, Changed) or call Watch or
// Close. A status page's ring (status.Events.Record) is the listener it
// was made for. With no listener, the cache builds no event and diffs no
// answer.
func (c *Cache) Notify(f func(Event)) (stop func()) { return c.events.Add(f) }

// instanceEvents reports how service's published instances, answered by
// datacenter dc, changed from prev to next (nil prev: from nothing), when
// anybody listens.
func (c *Cache) instanceEvents(service, dc string, prev, next []beacon.Instance) {
	if !c.events.Any() {
		return
	}
	for _, e := range diffInstances(prev, next, time.Now()) {
		e.Service, e.Datacenter = service, dc
		c.events.Emit(e)
	}
}

// diffInstances lists the per-instance events from prev to next, or one
// InstancesChanged event when there are more than MaxInstanceEvents.
func diffInstances(prev, next []beacon.Instance, now time.Time) []Event {
	old := make(map[beacon.InstanceKey]*beacon.Instance, len(prev))
	for i := range prev {
		old[prev[i].Key()] = &prev[i]
	}
	var out []Event
	added, removed, health := 0, 0, 0
	note := func(e Event) {
		if len(out) <= MaxInstanceEvents {
			e.Time = now
			out = append(out, e)
		}
	}
	for i := range next {
		n := &next[i]
		o, ok := old[n.Key()]
		if !ok {
			added++
			note(Event{Kind: EventInstanceAdded, Instance: n.ID, Detail: fmt.Sprintf("%s, %s", endpoint(n), n.Health)})
			continue
		}
		delete(old, n.Key())
		if o.Health != n.Health {
			health++
			note(Event{Kind: EventHealthChanged, Instance: n.ID, Detail: fmt.Sprintf("%s → %s", o.Health, n.Health)})
		}
	}
	for i := range prev { // prev's order, so the events are deterministic
		o := &prev[i]
		if _, gone := old[o.Key()]; gone {
			removed++
			note(Event{Kind: EventInstanceRemoved, Instance: o.ID, Detail: endpoint(o)})
		}
	}
	if len(out) > MaxInstanceEvents {
		return []Event{{Time: now, Kind: EventInstancesChanged,
			Detail: fmt.Sprintf("%d → %d instances: %d added, %d removed, %d changed health", len(prev), len(next), added, removed, health)}}
	}
	return out
}

// endpoint is an instance's address and port, for an event's detail.
func endpoint(i *beacon.Instance) string {
	if i.Port == 0 {
		return i.Address
	}
	return net.JoinHostPort(i.Address, strconv.Itoa(i.Port))
}
