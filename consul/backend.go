package consul

import (
	"fmt"
	"io"

	"github.com/beaconsd/beacon"
)

// Backend builds a client bound to one agent: cfg holds one address
// (Config.Agent). consulhttp.Backend and consulkit.Backend are Backends;
// keeper and discovery take one with their WithBackend options.
type Backend func(cfg Config) (beacon.Registry, error)

// Agent is one configured agent and the client bound to it.
type Agent struct {
	Addr   string
	Client beacon.Registry
}

// Agents builds a client for every agent in cfg.Addresses
// (DefaultAddress when there is none), in order of preference. When one
// cannot be built, the clients built so far are closed and the error
// names the agent.
func (b Backend) Agents(cfg Config) ([]Agent, error) {
	addrs := cfg.Addresses
	if len(addrs) == 0 {
		addrs = []string{DefaultAddress}
	}
	out := make([]Agent, 0, len(addrs))
	for i, addr := range addrs {
		c, err := b(cfg.Agent(i))
		if err != nil {
			CloseAgents(out)
			return nil, fmt.Errorf("agent %s: %w", addr, err)
		}
		out = append(out, Agent{Addr: addr, Client: c})
	}
	return out, nil
}

// CloseAgents closes every client that is an io.Closer (both backends
// are: they release idle connections).
func CloseAgents(agents []Agent) {
	for _, a := range agents {
		if c, ok := a.Client.(io.Closer); ok {
			_ = c.Close()
		}
	}
}
