package status

import (
	"sync"
	"time"
)

// EventKind says what happened. The values are stable: they appear in the
// JSON.
type EventKind string

// The kinds of events. A cache that reports its events (EventSource, as
// *discovery.Cache does) gives InstanceAdded, InstanceRemoved,
// HealthChanged, InstancesChanged (an answer changing more instances than
// discovery.MaxInstanceEvents), AgentDown, AgentUp, FailedOver,
// StaleViewRepaired and TokenRotated (its token file's) as they happen; for a cache that does not, the
// sampler infers FailedOver, StaleViewRepaired and InstancesChanged from
// two samples. The sampler always records PanicEntered, PanicLeft and
// ACLHidden. A keeper that reports its events (KeeperEventsSource, as
// *keeper.Keeper does) gives Registered, Deregistered, KeeperMoved,
// HeartbeatFailed, HeartbeatRecovered, TokenRotated, Maintenance and
// StaleCopyRemoved; for one that does not, the sampler infers KeeperMoved
// and Maintenance from its Status.
const (
	InstanceAdded     EventKind = "instance_added"
	InstanceRemoved   EventKind = "instance_removed"
	HealthChanged     EventKind = "health_changed"
	InstancesChanged  EventKind = "instances_changed"
	AgentDown         EventKind = "agent_down"
	AgentUp           EventKind = "agent_up"
	FailedOver        EventKind = "failover"
	StaleViewRepaired EventKind = "stale_view_repaired"
	PanicEntered      EventKind = "panic_entered"
	PanicLeft         EventKind = "panic_left"
	ACLHidden         EventKind = "acl_hidden"
	TokenRotated      EventKind = "token_rotated"
	KeeperMoved       EventKind = "keeper_moved"
	Maintenance       EventKind = "maintenance"
	// The keeper's own events (keeper.Notify), recorded as they happen
	// when WithKeeper is given a KeeperEventsSource; TokenRotated,
	// KeeperMoved and Maintenance come from there too then.
	Registered         EventKind = "registered"
	Deregistered       EventKind = "deregistered"
	HeartbeatFailed    EventKind = "heartbeat_failed"
	HeartbeatRecovered EventKind = "heartbeat_recovered"
	StaleCopyRemoved   EventKind = "stale_copy_removed"
)

// Event is one entry of the timeline. Its strings are cut at MaxText
// bytes when recorded.
type Event struct {
	// Time is when it happened, or when the sampler saw it.
	Time time.Time `json:"time"`
	Kind EventKind `json:"kind"`
	// Service, Instance (an instance ID) and Agent (an address) say what
	// it concerns; each may be empty.
	Service  string `json:"service,omitempty"`
	Instance string `json:"instance,omitempty"`
	Agent    string `json:"agent,omitempty"`
	// Detail is a short human sentence, e.g. "3 → 2 instances".
	Detail string `json:"detail,omitempty"`
}

// DefaultEvents is how many events a Handler's ring keeps.
const DefaultEvents = 200

// Events is a ring of the most recent events, oldest overwritten first. It
// is safe for concurrent use; Record takes a short lock and never blocks on
// anything else, so a hook may call it from a hot loop. The zero value
// is not usable: make one with NewEvents.
type Events struct {
	mu   sync.Mutex
	buf  []Event
	next int // where the next event goes
	full bool
}

// NewEvents returns a ring keeping the last n events (n < 1: DefaultEvents).
func NewEvents(n int) *Events {
	if n < 1 {
		n = DefaultEvents
	}
	return &Events{buf: make([]Event, n)}
}

// Record adds e, stamping it with the current time when e.Time is zero.
// A nil *Events records nothing, so a hook may hold one unconditionally.
func (r *Events) Record(e Event) {
	if r == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Service, e.Instance, e.Agent, e.Detail = cut(e.Service), cut(e.Instance), cut(e.Agent), cut(e.Detail)
	r.mu.Lock()
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Last returns the recorded events, newest first (by recording order, which
// is the order of Time for events stamped by Record).
func (r *Events) Last() []Event {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]Event, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// MaxText is the most bytes of any one string (an error, an event's
// detail) the page shows; longer ones are cut on a rune boundary and end
// with "…".
const MaxText = 512

// cut bounds s to MaxText bytes.
func cut(s string) string {
	if len(s) <= MaxText {
		return s
	}
	i := MaxText - len("…")
	for i > 0 && !utf8RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
