package consul

import "github.com/beaconsd/beacon"

// Backend builds a client bound to one agent: cfg holds one address
// (Config.Agent). consulhttp.New and consulkit.New fit it; keeper and
// discovery take one with their WithBackend options.
type Backend func(cfg Config) (beacon.Registry, error)
