// Package discovery is a watching cache of service instances: one
// blocking-query loop per (service, query), shared by every caller in the
// process and reference-counted, whose latest answer is held as an
// immutable Snapshot behind an atomic pointer. Reads (Snapshot, Instances,
// Pick) touch no network and take no lock.
//
// When Consul cannot be reached the last good snapshot keeps being served,
// with its age and the last error visible. An empty answer from Consul is
// published (scale to zero is real), unless ACLs caused it: then the last
// good snapshot stays, with ErrHiddenByACLs. While every configured agent is
// down, watches wait on one shared prober per agent instead of each polling
// it, and all resume as soon as it answers; an agent that stops answering
// without an error (paused, hung) is found by a watchdog and treated as down.
package discovery
