// Package keeper keeps one service instance registered in Consul, truthfully,
// for as long as it runs: what the seed says every instance owes the
// registry, done so that restarts, failures and shutdowns do not lose or
// duplicate it.
//
//   - Start validates and registers, retrying with jittered backoff until its
//     context ends, through the first configured agent that answers.
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
// A Keeper is safe for concurrent use. It logs state changes and errors to
// the *slog.Logger given with WithLogger (default: discard).
package keeper
