// Package consulhttp implements beacon.Registry on Consul's agent HTTP API
// with the standard library only: the "do it yourself" raw-HTTP client that
// the original SayHello tutorial wrote with string-built URLs and a new
// http.Client per call, done properly. One reused *http.Client, a deadline on every request (longer than
// a blocking query's wait plus Consul's jitter), IDs percent-escaped in
// paths, the token only in the X-Consul-Token header, bodies drained, closed
// and size-capped, and non-2xx answers returned as *beacon.StatusError.
// Besides beacon.Registry it implements the optional roles (ChangeFeed,
// ACLProber, AgentServiceWatcher, PreparedQueries) and a few operator calls.
package consulhttp
