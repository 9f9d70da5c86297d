// Package status serves a page that shows what one Beacon process believes
// about its dependencies: its discovery cache's watches, the Consul agents
// it reads from, its keeper's registration, how many instances each service
// had over the last minutes, and a timeline of recent events.
//
// Mount a Handler wherever the program serves its admin endpoints,
// conventionally at /debug/beacon:
//
//	h := status.New(status.WithCache(cache), status.WithKeeper(k, id))
//	defer h.Close()
//	adminMux.Handle("/debug/beacon", h)
//
// It answers HTML by default, and JSON (the same Report) for a request
// with Accept: application/json or ?format=json, so a person reads it in a
// browser and a program or `curl` reads the JSON.
//
// # An admin listener, as pprof
//
// The page belongs on an admin listener, as net/http/pprof does, not on
// the port the service's callers use: it names the services the process
// depends on, the agents' addresses and its own instance. It shows no
// token, no configuration and no environment (it is never given them:
// only a cache's Stats, a keeper's Status and agent addresses, stripped of
// user info), and it is read-only: GET and HEAD, anything else is refused
// with 405. Its output is bounded (WithMaxWatches, 200 events, strings cut
// at MaxText bytes), and the HTML carries a Content-Security-Policy that
// allows no script, no fetch and no frame: the page is plain HTML and CSS
// with inline SVG pictures, with no JavaScript and no external asset, so
// it works offline.
//
// # Sampling
//
// The pictures of instances over time come from the Handler's own
// sampler: a goroutine that reads the cache's Stats every sample period
// (WithSampling; default every 10 s, 60 samples: the last 10 minutes) and
// keeps, per service, a fixed ring of passing counts, for at most
// MaxServices services. It starts with New when a cache is given and
// stops with Close. The same sampler derives events from successive
// Stats (a failover, a stale view repaired, a change in a watch's
// instance count, entering or leaving panic, ACLs hiding a service); the
// timeline shows them with the time the sampler saw them.
//
// # The cache's events
//
// Given a cache that has events (an EventSource, as *discovery.Cache is),
// New subscribes to them (discovery.Cache.Notify) and Close unsubscribes:
// each instance added, removed or changing health, each agent marked down
// or up, each failover and stale view repaired, with the time it
// happened. The sampler then infers none of those kinds; it still records
// panic and ACL-hidden changes.
//
// # The keeper's events
//
// Given a keeper that has events (a KeeperEventsSource, as
// *keeper.Keeper is), New subscribes to them and Close unsubscribes: its
// registrations, moves to another agent, failed and recovered
// heartbeats, token rotations (never the token), maintenance, copies
// removed from previous agents and deregistrations reach the timeline as
// they happen, with the keeper's time. The sampler then no longer infers
// the keeper's moves and maintenance from its Status (which it does for a
// StatusSource without events), so nothing appears twice.
package status
