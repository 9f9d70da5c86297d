// Package consulhttp implements beacon.Registry on Consul's agent HTTP API
// with the standard library only: the "do it yourself" raw-HTTP client that
// the original SayHello tutorial wrote with string-built URLs and a new
// http.Client per call, done properly. One reused *http.Client, a deadline on every request (longer than
// a blocking query's wait plus Consul's jitter), IDs percent-escaped in
// paths, the token only in the X-Consul-Token header, bodies drained, closed
// and size-capped, and non-2xx answers returned as *beacon.StatusError.
// Besides beacon.Registry it implements the optional roles (ChangeFeed,
// ACLProber, AgentServiceWatcher, PreparedQueries) and a few operator calls.
//
// Consul answers a health query with the whole list every time. For
// answers of 64 entries or more, a Client keeps the last answer per
// query (less its index and wait; at most 256 queries) and hands out the
// previous instance again for every entry whose bytes did not change,
// decoding only the entries that did: a change to one instance of 2,000
// costs one decode, not 2,000. Entries that are not byte-identical to one
// decoded before are decoded and validated in full. Instances from
// successive answers may therefore share their Tags, Meta and other maps:
// treat them as read-only.
package consulhttp
