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
//     instance registers again at once, with jitter; a periodic look at the
//     agent's copy catches a lost or altered registration between heartbeats.
//   - When the agent stops answering, the instance registers through the next
//     configured agent, and later removes the copy left on the old one once
//     it answers again: registrations belong to the agent that made them.
//   - Update resubmits tags, meta or weights.
//   - Stop drains: it marks the instance critical, waits a grace period so
//     watchers drop it, deregisters, and returns.
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
// Start and ended by Stop, makes every call to Consul, so heartbeats,
// failovers, Update and the drain never interleave; Status never waits for
// them. The keeper logs state changes and errors to the *slog.Logger given
// with WithLogger (default: discard). Every call to an agent is bounded by
// consul.Config.Timeout.
package keeper
