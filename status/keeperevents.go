package status

import "github.com/beaconsd/beacon/keeper"

// KeeperEventsSource is what the page subscribes to of a keeper, when its
// StatusSource has it; *keeper.Keeper does. With it the timeline shows the
// keeper's events as they happen (see keeperKinds), and the sampler no
// longer infers the keeper's moves and maintenance from its Status.
type KeeperEventsSource interface {
	Notify(f func(keeper.Event)) (stop func())
}

var _ KeeperEventsSource = (*keeper.Keeper)(nil)

// keeperKinds maps the keeper's event kinds to the timeline's. The strings
// are the same; the table keeps them from drifting apart unseen (a test
// checks every kind the keeper has).
var keeperKinds = map[keeper.EventKind]EventKind{
	keeper.EventRegistered:         Registered,
	keeper.EventDeregistered:       Deregistered,
	keeper.EventMoved:              KeeperMoved,
	keeper.EventHeartbeatFailed:    HeartbeatFailed,
	keeper.EventHeartbeatRecovered: HeartbeatRecovered,
	keeper.EventTokenRotated:       TokenRotated,
	keeper.EventMaintenance:        Maintenance,
	keeper.EventStaleCopyRemoved:   StaleCopyRemoved,
}

// keeperNotifies reports whether the keeper's events come from the keeper
// itself, so the sampler must not infer them too.
func (h *Handler) keeperNotifies() bool {
	_, ok := h.o.keeper.(KeeperEventsSource)
	return ok
}

// subscribeKeeper records the keeper's events into the timeline, when the
// keeper has them, and returns what ends that (Close calls it).
func (h *Handler) subscribeKeeper() (stop func()) {
	src, ok := h.o.keeper.(KeeperEventsSource)
	if !ok {
		return func() {}
	}
	id, ev := h.o.instanceID, h.events
	// Called from the keeper's goroutine: Record takes a short lock and
	// returns, so the keeper is never held up.
	return src.Notify(func(e keeper.Event) { ev.Record(eventOfKeeper(id, e)) })
}

// eventOfKeeper converts one keeper event for the timeline. Addresses go
// through address, as every address the page shows: Agent, and a move's
// From and Agent in its detail (the keeper gives them as configured, user
// info included).
func eventOfKeeper(id string, e keeper.Event) Event {
	kind, ok := keeperKinds[e.Kind]
	if !ok {
		kind = EventKind(e.Kind) // a kind newer than this table
	}
	detail := e.Detail
	if kind == KeeperMoved && e.From != "" {
		detail = address(e.From) + " → " + address(e.Agent)
	}
	return Event{Time: e.Time, Kind: kind, Instance: id, Agent: address(e.Agent), Detail: detail}
}
