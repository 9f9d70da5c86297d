package discovery

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
)

// EventKind says what the cache saw happen. The values are stable: the
// status page shows them and its JSON carries them.
type EventKind string

// The kinds of Event a Cache reports to Notify's listeners.
const (
	// InstanceAdded, InstanceRemoved and HealthChanged are one instance's
	// change in a published snapshot (Instance is its ID).
	InstanceAdded   EventKind = "instance_added"
	InstanceRemoved EventKind = "instance_removed"
	HealthChanged   EventKind = "health_changed"
	// InstancesChanged sums up an answer that changed more than
	// MaxInstanceEvents instances, instead of one event each.
	InstancesChanged EventKind = "instances_changed"
	// AgentDown and AgentUp: the cache marked an agent down (Detail says
	// why: the watchdog's verdict or a transport error) or found it
	// answering again.
	AgentDown EventKind = "agent_down"
	AgentUp   EventKind = "agent_up"
	// FailedOver: a failover watch moved to another datacenter, or back
	// (Detail "local → dc2"); StaleViewRepaired: the stale guard found a
	// streaming view behind the catalog and published a plain read.
	FailedOver        EventKind = "failover"
	StaleViewRepaired EventKind = "stale_view_repaired"
)

// MaxInstanceEvents is the most per-instance events one published answer
// gives; an answer that changed more (a first snapshot of a large service,
// a redeploy) gives one InstancesChanged event, so one service cannot push
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
	// Agent is the agent's address, for AgentDown and AgentUp.
	Agent string
	// Detail is a short sentence: an instance's address and health, a
	// health change ("passing → critical"), why an agent is down.
	Detail string
}

// listeners holds Notify's functions, copied on write so that emitting
// takes no lock and costs one atomic load when nobody listens.
type listeners struct {
	mu  sync.Mutex
	fns atomic.Pointer[[]*func(Event)]
}

func (l *listeners) add(f func(Event)) (stop func()) {
	p := &f
	l.mu.Lock()
	var cur []*func(Event)
	if old := l.fns.Load(); old != nil {
		cur = *old
	}
	next := append(slices.Clip(cur), p)
	l.fns.Store(&next)
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			next := slices.DeleteFunc(slices.Clone(*l.fns.Load()), func(q *func(Event)) bool { return q == p })
			l.fns.Store(&next)
		})
	}
}

func (l *listeners) any() bool {
	p := l.fns.Load()
	return p != nil && len(*p) > 0
}

func (l *listeners) emit(e Event) {
	if l == nil {
		return
	}
	p := l.fns.Load()
	if p == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	for _, f := range *p {
		(*f)(e)
	}
}

// Notify calls f for each Event from now on, until stop is called (stop
// may be called more than once). f is called on the cache's own
// goroutines, while a watch publishes or an agent changes state, so it
// must return at once and must not call back into the cache; a status
// page's ring (status.Events.Record) is the intended listener. With no
// listener, the cache computes no event.
func (c *Cache) Notify(f func(Event)) (stop func()) {
	if f == nil {
		return func() {}
	}
	return c.events.add(f)
}

// instanceEvents reports how w's instances changed from prev to next (nil
// prev: from nothing), when anybody listens.
func (c *Cache) instanceEvents(w *watch, service string, prev, next []beacon.Instance) {
	if !c.events.any() {
		return
	}
	for _, e := range diffInstances(prev, next, time.Now()) {
		e.Service, e.Datacenter = service, w.q.Datacenter
		c.events.emit(e)
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
			note(Event{Kind: InstanceAdded, Instance: n.ID, Detail: fmt.Sprintf("%s, %s", endpoint(n), n.Health)})
			continue
		}
		delete(old, n.Key())
		if o.Health != n.Health {
			health++
			note(Event{Kind: HealthChanged, Instance: n.ID, Detail: fmt.Sprintf("%s → %s", o.Health, n.Health)})
		}
	}
	for i := range prev { // prev's order, so the events are deterministic
		o := &prev[i]
		if _, gone := old[o.Key()]; gone {
			removed++
			note(Event{Kind: InstanceRemoved, Instance: o.ID, Detail: endpoint(o)})
		}
	}
	if len(out) > MaxInstanceEvents {
		return []Event{{Time: now, Kind: InstancesChanged,
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
