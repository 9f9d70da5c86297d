package beacon

import (
	"context"
	"time"
)

// AgentServiceWatcher is an optional capability of a backend: a blocking
// read of the agent's own copy of an instance (GET /v1/agent/service/:id
// with ?hash and ?wait). WatchAgentService returns the copy and its content
// hash once the hash differs from hash (at once when hash is ""), when wait
// passes (the same hash), with ErrNotFound when the agent does not hold
// id, or with an error wrapping ErrUnavailable the moment the agent goes
// away (its connection breaks): a keeper uses it to notice promptly that
// its agent restarted, between two heartbeats. It is bounded by ctx and by
// wait plus the backend's request timeout.
type AgentServiceWatcher interface {
	WatchAgentService(ctx context.Context, id, hash string, wait time.Duration) (Instance, string, error)
}
