package discovery

import (
	"fmt"
	"slices"
	"strings"

	"github.com/beaconsd/beacon"
)

// UnreachableError is returned by Wait, Instances, Snapshot and Pick when
// a service has no answer to serve because no Consul agent can be reached.
// It matches beacon.ErrUnavailable and unwraps to the last error met.
type UnreachableError struct {
	Service string
	// Agents are the addresses of the agents that cannot be reached.
	Agents []string
	// Err is the last error met asking them.
	Err error
}

func (e *UnreachableError) Error() string {
	who := "the Consul agent at " + strings.Join(e.Agents, "")
	if len(e.Agents) > 1 {
		who = "any of the Consul agents at " + strings.Join(e.Agents, ", ")
	}
	if e.Err == nil {
		return fmt.Sprintf("discovery: %q: cannot reach %s", e.Service, who)
	}
	return fmt.Sprintf("discovery: %q: cannot reach %s: %v", e.Service, who, e.Err)
}

// Unwrap returns beacon.ErrUnavailable and the last error.
func (e *UnreachableError) Unwrap() []error {
	if e.Err == nil {
		return []error{beacon.ErrUnavailable}
	}
	return []error{beacon.ErrUnavailable, e.Err}
}

// unreachable returns an *UnreachableError for service when every agent is
// marked down, or when last (the watch's own first error) says it could
// not reach one; otherwise nil.
func (c *Cache) unreachable(service string, last error) error {
	down, cause, all := c.agents.outage()
	if last == nil {
		if !all {
			return nil
		}
		last = cause
	}
	if len(down) == 0 {
		down = slices.Clone(c.agents.addrs)
	}
	return &UnreachableError{Service: service, Agents: down, Err: last}
}

// hasSaved reports whether the snapshot file holds an answer for the
// watch key, which the watch serves at its first error.
func (c *Cache) hasSaved(key string) bool {
	_, ok := c.saved[key]
	return ok
}
