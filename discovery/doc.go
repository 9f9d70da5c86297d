// Package discovery is a watching cache of service instances: one
// blocking-query loop per (service, query), shared by every caller in the
// process and reference-counted, whose latest answer is held as an
// immutable Snapshot behind an atomic pointer. Reads (Snapshot, Instances,
// Pick) touch no network and take no lock.
//
// A snapshot offers each endpoint once, whatever the query: entries with
// the same address and port (an instance that moved to another agent while
// the old agent kept or restored a copy, or one process under two IDs)
// become one, the copy with the best health (passing, warning, critical),
// then the lowest node name, then the lowest ID. The same ID on nodes at
// other addresses is another instance, since Consul's IDs are unique per
// agent only. See dedupe.go.
//
// When Consul cannot be reached the last good snapshot keeps being served,
// with its age and the last error visible. An empty answer from Consul is
// published (scale to zero is real), unless ACLs caused it: then the last
// good snapshot stays, with ErrHiddenByACLs. While every configured agent is
// down, watches wait on one shared prober per agent instead of each polling
// it, and all resume as soon as it answers; an agent that stops answering
// without an error (paused, hung) is found by a watchdog and treated as down.
//
// Consul before 1.16 can serve a service's first streaming subscriber a
// view that lost a change, and keeps serving it (hashicorp/consul#16871).
// A stale guard (stale.go) checks each watch against a plain read, which
// bypasses the view, after its first blocking query, when the change feed
// reports a change to its service (unless the watch has by then answered
// at or past the index of the feed's answer: its view is at least as new),
// and once in ten wait periods; a watch found stale publishes the plain
// read and blocks with near=_agent until the agent has dropped the view.
// With a backend that has a change feed (consulhttp, consulkit), a lost
// change that the feed shows (a health change, node checks included; a
// registration or deregistration) is served no longer than WithStaleBound
// (default 10 s) beyond Consul's own propagation; the rest (meta-only
// changes, changes that leave a service's summary counts as they were
// within one feed round, a view that lost a change and got a later one of
// the same service before its verification, other datacenters) within ten
// wait periods.
// Each stale view found is logged with both indexes and counted
// (WatchStats.StaleViews, StaleViewCounter).
//
// The read path is a switch (readpath.go): ReadStreaming (the default)
// leaves it to the agent, which serves blocking health queries from its
// streaming backend when use_streaming_backend is on; ReadBlocking keeps
// every query a plain blocking query (?merge-central-config, which Consul
// 1.14 never streams and which changes nothing for services that are not
// sidecar proxies or gateways); ReadCached reads the agent's own cache
// (?cached without streaming: X-Cache HIT or MISS, Age). WithReadPath sets
// it per cache, UseReadPath pins one watch, Cache.SetReadPath switches a
// running cache (each watch's request in flight is ended and asked again
// from index 0 on the new path), and WithReadPathFile follows a file an
// operator writes. Programs read BEACON_READ_PATH or BEACON_READ_PATH_FILE
// (ReadPathFromEnv, ChooseReadPath): an operator who hits a streaming
// problem turns it off without a code change. WatchStats.ReadPath,
// Backend (X-Consul-Query-Backend) and AgentCache say what answered. The
// stale guard has no view to look for off streaming, and stays idle there.
//
// A panic threshold (WithPanicThreshold, PanicThreshold; off by default)
// keeps a partial outage from flattening the few survivors: a watch with
// threshold p asks Consul for every instance and, while fewer than p of
// those not in maintenance pass, publishes all of those, whatever their
// health, with Snapshot.Panic set and a Set that weights them all as
// passing; it returns to the passing ones at the first answer where their
// share is p again. With a threshold the no-passing policy never applies
// (none passing is panic, which publishes warning and critical instances
// alike); a watch without one follows it as before. Failover counts
// passing instances only: a datacenter with fewer than Failover.MinPassing
// passing is failed over from whether it is in panic or not, one with
// enough but below the share is served in panic, and when no candidate
// has a passing instance the local one is served, in panic. See panic.go
// and docs/architecture.md.
//
// The change feed (feed.go) drives the watches beyond WithMaxLongPolls with
// one blocking query for the whole datacenter: GET
// /v1/internal/ui/services (beacon.ServiceSummaries, one summary per
// service: counts of instances and of passing, warning and critical
// checks, and a digest of node names and tags), whose changed services'
// watches are fetched at once; an agent that answers it 404 or 405 (the
// endpoint is internal to Consul) gets /v1/health/state/any instead
// (beacon.ChangeFeed, every check: about six times the bytes, 50 MB at
// 100,000 instances). Summaries do not show changes that keep a service's
// counts (two opposite flips or a swap of health within one service in
// one blocking round) nor meta-only changes (which the checks never
// showed either): a sweep fetches every feed watch once per wait period
// and catches them then. The feed's query never marks an agent down
// unless its connection fails: a slow answer is not a dead agent.
//
// Rate limits (issue 15): a watch follows its service's changes at once
// while they come no faster than the hot threshold (WithHotThreshold:
// bursts of 25, 50 a second), so a rolling deploy is seen without lag.
// An index that moves faster makes the watch hot: it then polls at its
// ceiling (WithRateLimit: a burst of 2, then one query a second), as
// Consul's documentation asks of a client facing a busy index, until one
// of its blocking queries waits 50 ms for an answer (timed from when it
// was sent: waiting for a long-poll slot or the cap is not an answer's
// wait). A cache-wide cap
// (WithMaxRequestRate, off by default) bounds every request the cache
// sends with one shared token bucket. WatchStats (Hot, HotSpells,
// RateLimited, RateLimitWait) and Cache.RequestCap show both.
//
// WatchRTTs estimates round-trip times from the agent's node to every node
// of the local datacenter, from Consul's network coordinates: one blocking
// watch of /v1/coordinate/nodes per cache, started with the first handle
// and stopped with the last, in the long-poll budget (rtt.go). Sorting by
// them happens on the client (balancer.NewNearest, beacon.SortByRTT):
// ?near= on a health query would turn the agent's streaming backend off.
//
// Stats and Agents describe what the cache believes now, for metrics and
// status pages (package status); Notify tells a listener what changes as
// it happens: instances added, removed or changing health in what a
// watch publishes, agents marked down or up, failovers, stale views
// repaired and token file rotations (events.go).
//
// Inside, the Cache owns its parts and hands each only what it uses: the
// agents (agents.go) are the one source, a beacon.Lookup that is also a
// beacon.ChangeFeed, beacon.ServiceSummaries and beacon.ACLProber; every watch's long poll and the
// change feed's (feed.go) run internal/blocking's one loop through run
// (loop.go), which adds the long-poll slots, rate limit and metrics they
// share; the feed and the ACL guard (acl.go) get the source, a publish
// function, a logger and metrics, and the parts that start goroutines get
// the cache's lifetime (a context and the goroutines Close waits for),
// never the Cache.
package discovery
