// Package httpclient sends HTTP requests to Consul services by name: its
// Transport, an http.RoundTripper, resolves http://<service>/path (and
// https) through a discovery cache, picks an instance with a balancer and
// sends the request there.
//
//	cache, err := discovery.New(cfg)
//	...
//	defer cache.Close()
//	client := &http.Client{Transport: httpclient.New(cache), Timeout: 5 * time.Second}
//	resp, err := client.Get("http://hello/greeting")
//
// The URL's host is the service name; a port in it is ignored, since Consul
// knows each instance's. Any name Consul accepts works, including those DNS
// cannot serve, such as http://legacy_svc/ or http://api.v2/
// (beacon.ValidateServiceName): a Transport never resolves a name through
// DNS. It refuses an IP address as a host, including in absolute redirects,
// before sending anything. The first request for a service waits, within
// its context, for Consul's first answer; later requests read the cache's
// latest snapshot and touch no network but the instance's. A service without
// instances fails at once with beacon.ErrNoInstances; one the cache has
// never had an answer for, because no agent can be reached, fails with a
// *discovery.UnreachableError (matching beacon.ErrUnavailable).
//
// # What is sent
//
// The request is copied, never modified: the copy's URL host is the
// instance's address and port, and the scheme, path and query are kept. The
// Host header is the instance's address too, as if the caller had dialled it,
// unless the caller set Request.Host to something other than the URL's host,
// in which case it is sent as set. With https the base transport verifies
// the instance's certificate against the instance's address, unless its
// TLSClientConfig.ServerName says otherwise (for example "hello.service.consul").
// Response.Request is the copy that was sent, which tells which instance
// answered.
//
// # Load accounting
//
// With the P2C balancer, every request counts as in flight on its instance
// (see balancer.Endpoint.InFlight, which P2C steers by) until its response
// body is read to the end or closed, whichever comes first, or until the
// attempt fails; the Transport calls the pick's Done exactly once either way,
// whatever the balancer (the others count nothing). Close every response
// body, as net/http requires.
//
// # Retries
//
// A request is retried at most WithRetries times (default 2), on an
// instance not yet tried when there is one (else on any), only when all of
// these hold:
//
//   - no response was received, and the attempt failed on the connection:
//     the dial failed (connection refused, unreachable, dial timeout), or the
//     connection was reset or closed before the first byte of a response;
//   - the request is idempotent (RFC 9110 section 9.2.2): GET, HEAD,
//     OPTIONS, TRACE, PUT or DELETE, or any method carrying an
//     Idempotency-Key or X-Idempotency-Key header, as net/http counts them;
//   - its body can be sent again: none, or Request.GetBody is set (as
//     http.NewRequest does for byte and string readers);
//   - the request's context has not ended.
//
// A response, whatever its status, is never retried, and neither is POST or
// PATCH without an idempotency key, even after a refused connection.
//
// # Ejection
//
// An instance whose connections fail WithEjection's number of times in a row
// (default 3) is skipped for a while (default 10 s), then tried again; any
// response resets its count. The last instance not ejected is never
// ejected: a Transport rather tries a failing instance than none. Ejected
// reports what is being skipped.
//
// # Zones
//
// WithZone("a") makes every service's picks prefer its instances in zone a
// (an instance's zone is its service meta "zone", else its node's), through
// a balancer.ZoneAware per service around the balancer: all picks stay in
// the zone while it has instances, unless the callers' spread over zones
// (WithZoneCallers, learned from the callers' own service in Consul, or
// balancer.WithCallers) says the zone has fewer instances than its share of
// the callers; then only that share stays and the rest spills to zones with
// capacity to spare, as Envoy's zone-aware routing does. Ejection filters
// the Set before the zone is chosen, and a retry picks from the Set less
// the instances tried, so a zone whose instances all failed is left for
// another.
//
// The Transport owns no set of its own: it picks from the discovery
// snapshot's Set (discovery.Snapshot.Set, built at the first pick), filtered
// by a balancer.Ejection per service, and a retry filters that with
// balancer.Set.Without. The rules of ejection live in package balancer, not
// here.
//
// # Nearest instances
//
// WithNearest sends each request to one of the instances on the nodes
// nearest to the caller's (the cache's agent's node), by the round-trip
// times Consul's network coordinates estimate (discovery.WatchRTTs,
// balancer.NewNearest); the balancer picks among them. Ejection and
// retries compose with it: they narrow the Set first, so a retry, or a
// request while the nearest instance is ejected, goes to the next nearest.
//
// A Transport is safe for concurrent use. It watches each service it has
// sent a request to until its Close, or until the cache closes, keeping at
// most WithMaxServices of them (the least recently used is released, in the
// same bounded map the cache pins its own watches in). Per request
// it allocates a copy of the request and a wrapper of the response body,
// beyond what the base transport allocates; retries and ejections allocate
// more.
package httpclient
