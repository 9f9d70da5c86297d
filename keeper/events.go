package keeper

import "time"

// EventKind says what an Event reports. The values are stable strings;
// where they overlap with the status page's kinds (status.EventKind) they
// are the same.
type EventKind string

// The kinds of events a Keeper reports (Notify).
const (
	// EventRegistered: an agent accepted the registration without the
	// keeper moving: Start's, an Update's, or a repair's on the same agent
	// (it had lost or altered its copy). Detail says which.
	EventRegistered EventKind = "registered"
	// EventDeregistered: an agent removed the instance at Stop (or after a
	// failed Start); one event per agent that held or may have held it.
	EventDeregistered EventKind = "deregistered"
	// EventMoved: the registration failed over to another agent; Agent is
	// the new one, From the old one, Detail says "from → to".
	EventMoved EventKind = "keeper_moved"
	// EventHeartbeatFailed: a heartbeat (or a look at the agent's copy)
	// failed after the last one succeeded; later failures in a row are not
	// reported. Detail is the error.
	EventHeartbeatFailed EventKind = "heartbeat_failed"
	// EventHeartbeatRecovered: an agent accepted a heartbeat or a
	// registration after EventHeartbeatFailed.
	EventHeartbeatRecovered EventKind = "heartbeat_recovered"
	// EventTokenRotated: the token file's token changed and the instance
	// was registered again with the new one. Neither token nor any digest
	// of it is in the event.
	EventTokenRotated EventKind = "token_rotated"
	// EventMaintenance: the instance entered maintenance (Detail "entered:
	// reason") or left it ("left"), through Maintenance or found on the
	// agent.
	EventMaintenance EventKind = "maintenance"
	// EventStaleCopyRemoved: the copy left on an agent the keeper moved
	// away from was deregistered there; Agent is that agent.
	EventStaleCopyRemoved EventKind = "stale_copy_removed"
)

// Event is something that happened to the registration.
type Event struct {
	// Time is when the keeper saw it.
	Time time.Time
	Kind EventKind
	// Agent is the address of the agent concerned, as configured; for
	// EventMoved the agent moved to, and From the one moved from.
	Agent string
	From  string
	// Detail is a short human sentence; it never holds a token.
	Detail string
}

// Notify calls f with every event from now until stop is called. f is
// called from the keeper's own goroutine, the one that heartbeats, in the
// order the events happen: it must return quickly and never block, and it
// must not call the Keeper's Start, Update, Maintenance or Stop, which wait
// for that goroutine (Status is fine; so is stop). Record the event and
// return, or hand it to a channel without waiting.
//
// Any number of functions may listen; stop removes this one and is safe to
// call more than once and concurrently. An event being delivered while stop
// is called may still reach f once. A nil f listens to nothing. Events end with the keeper: once Stop
// has returned, f is not called again. While nobody listens, the keeper
// builds no events.
func (k *Keeper) Notify(f func(Event)) (stop func()) { return k.listeners.Add(f) }

// listened reports whether any function listens: events with a detail to
// format are built only then.
func (k *Keeper) listened() bool { return k.listeners.Any() }

// emit hands an event to every listener. Only run (and what it calls)
// emits, so listeners see events in order.
func (k *Keeper) emit(kind EventKind, agent, detail string) {
	if !k.listeners.Any() {
		return
	}
	k.listeners.Emit(Event{Time: time.Now(), Kind: kind, Agent: agent, Detail: detail})
}
