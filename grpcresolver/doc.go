// Package grpcresolver lets a gRPC client find its servers in Consul: a
// resolver.Builder for the scheme "consul" over a discovery.Cache.
//
//	cache, err := discovery.New(cfg)
//	...
//	conn, err := grpc.NewClient("consul:///hello?tag=v2",
//		grpc.WithResolvers(grpcresolver.NewBuilder(cache)),
//		grpc.WithTransportCredentials(insecure.NewCredentials()),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
//
// # Targets
//
// A target is "consul:///<service>" with any number of "tag" parameters,
// all of which an instance must carry: "consul:///hello?tag=a&tag=b". An
// authority, as in "consul://anything/hello", is accepted and ignored: the
// Consul agents are the cache's. The service may be any name Consul
// accepts, "consul:///legacy_svc" included (beacon.ValidateServiceName),
// tags must be non-empty, and any other
// parameter is refused, so a typo fails at the first connection attempt
// rather than silently selecting everything.
//
// # What is pushed to gRPC
//
// Every resolver shares the cache's watch of its query, so it sends
// nothing to Consul of its own, and ResolveNow does nothing: the watch
// already follows every change. The resolver pushes to gRPC one address
// ("host:port") per passing instance, as both State.Addresses and
// State.Endpoints; each Endpoint's Attributes carry the instance's
// beacon.InstanceKey, read back with InstanceKeyOf. Instances without a
// port are skipped, and two instances at the same host:port are one
// address.
//
// A set is pushed only when it differs from the last one pushed: a change
// that leaves every address (and the instance behind it) in place, such as
// new metadata or a tag the query does not select on, does not disturb
// gRPC's connections.
//
// An empty set is pushed too. Scaling to zero is real: RPCs then fail with
// codes.Unavailable (or wait, with grpc.WaitForReady) until an instance
// comes back.
//
// # When Consul is unreachable
//
// Before Consul has answered even once, the watch's error is reported with
// ClientConn.ReportError, so RPCs fail with it instead of waiting blindly.
// Once a set has been pushed, errors are not reported: the last good set
// stays in place, and gRPC keeps using it. Serving stale addresses is the
// design: a Consul outage must not take down traffic between services that
// are themselves healthy, and gRPC's own connection management already
// avoids servers that have really gone away. The cache logs the errors.
//
// # Lifetimes
//
// gRPC closes its resolver when the ClientConn closes; Close stops the
// resolver's goroutine, waits for it, and releases the watch. Close client
// connections before the cache they resolve through.
package grpcresolver
