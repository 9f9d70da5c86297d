// Package keeper keeps one service instance registered in Consul, truthfully,
// for as long as it runs: what the original SayHello tutorial says every
// instance owes the registry (register at start, heartbeat, deregister at
// shutdown), done so that restarts, failures and shutdowns do not lose or
// duplicate it.
//
//   - Start validates and registers, retrying with jittered backoff until its
//     context ends, through the first configured agent that answers. A
//     failed Start leaves nothing registered.
//   - A TTL check is heartbeated every TTL/3 with constant output, so
//     heartbeats cause no Raft writes; an optional health function sets it
//     passing, warning or critical.
//   - When the agent no longer knows the check (restarted, state lost), the
//     instance registers again there at once. A long poll of the agent's
//     copy of the registration (when the backend implements
//     beacon.AgentServiceWatcher, as both of Beacon's do) breaks the moment
//     the agent dies or loses the copy, so a restart between two heartbeats
//     is repaired at once too; a periodic look at the agent's copy catches
//     a lost or altered registration otherwise.
//   - When a heartbeat fails for a transport reason (no answer, 5xx, 429),
//     the same agent is retried, 100 ms growing to 1 s, jittered, while the
//     TTL leaves time (until a heartbeat interval before it runs out).
//   - When the agent still does not answer, or refuses otherwise, the
//     instance registers through the next configured agent. A goroutine
//     per agent moved away from then asks that agent to deregister the copy
//     left there until it answers (registrations belong to the agent that
//     made them), without holding up the heartbeat.
//   - Update resubmits tags, meta, weights or checks. The registration's
//     own checks (HTTP, TCP, TTL, gRPC, H2PING, alias) go to the agent as
//     given, beside the heartbeat. An alias check names a service ID on
//     the agent that holds the instance (unless it gives AliasNode): after
//     a failover to another agent it mirrors that agent's service of that
//     ID, or is critical when there is none.
//   - Maintenance takes the instance out of passing lists and back; the
//     keeper's own re-registrations keep it, and one an operator set on
//     the agent (beacon maint) is read before registering there again.
//   - Stop drains: it marks the instance critical, waits a grace period so
//     watchers drop it, deregisters, and returns.
//
// # Status and events
//
// Status is a snapshot, never waiting for a call to Consul: the agent
// holding the registration, whether the last heartbeat succeeded, the
// agents that may still hold an old copy (PreviousAgents), maintenance,
// the last error. Notify calls a function for each event as it happens
// (registered, deregistered, keeper_moved, heartbeat_failed and
// heartbeat_recovered, token_rotated, maintenance, stale_copy_removed),
// from the keeper's goroutine: it must not block. The status page
// (package status) shows both. No event holds a token.
//
// # What the heartbeat proves
//
// Without WithHealth, every heartbeat reports passing: it proves that the
// process runs and reaches its agent, nothing more. A process that is up
// but cannot serve (a wedged handler, a lost database) stays passing and
// keeps receiving traffic. Give WithHealth a function that checks what
// callers depend on, such as a GET of the service's own health endpoint;
// its result becomes the heartbeat check's status.
//
// # Start time, for callers' slow start
//
// WithStartedMeta publishes the keeper's creation time in the instance's
// service meta (beacon.MetaStarted, "beacon-started", Unix seconds), the
// same value in every registration the keeper sends, so that callers whose
// balancers ramp new instances (balancer.WithSlowStart) ramp this one from
// its start even when they restart after it.
//
// # Service names
//
// Consul accepts service names that its DNS interface cannot serve (an
// underscore or a dot, as in legacy_svc or api.v2); so does the keeper, which
// logs a warning once, from New, saying that Consul DNS will not find the
// instance. Discovery through the HTTP API finds it.
//
// # Concurrency
//
// A Keeper is safe for concurrent use. One goroutine per Keeper, started by
// Start and ended by Stop, makes every call to Consul that writes the live
// registration, so heartbeats, failovers, Update and the drain never
// interleave; Status never waits for them. Beside it run the watcher of the
// current agent (one long-poll connection) and the probes of agents moved
// away from; they report to it by message, and Stop waits for them. The
// keeper logs state changes and errors to the *slog.Logger given with
// WithLogger (default: discard). Every call to an agent is bounded by
// consul.Config.Timeout, except the watcher's long poll, which waits up to
// five minutes plus that timeout.
package keeper
