// Package registrytest is a conformance suite for implementations of
// beacon.Registry, in the spirit of testing/fstest, and the home of
// Beacon's two test doubles: FakeAgent, a hostile HTTP agent, and Memory,
// an in-memory registry. A backend hands Run a Factory, and Run checks the
// backend against real Consul agents started with consultest.
//
// A backend runs the suite from one of its own tests:
//
//	func TestConformance(t *testing.T) {
//		registrytest.Run(t, func(t *testing.T, cfg consul.Config) beacon.Registry {
//			r, err := mybackend.New(cfg)
//			if err != nil {
//				t.Fatalf("mybackend.New() = %v", err)
//			}
//			t.Cleanup(func() { r.Close() })
//			return r
//		})
//	}
//
// The factory is called once or more per subtest, with that subtest's t and
// a consul.Config for a dev agent the suite has started. The config may
// carry https addresses, CA and client certificate files (the TLS subtest)
// and an ACL token (the ACL subtest); a backend must honour all of them.
// The suite closes nothing: the factory registers its own cleanup with
// t.Cleanup.
//
// Run needs a consul binary: $CONSUL_BIN, consul on PATH, or bin/consul in
// the working directory or above it (see consultest.BinaryPath). Without one
// every subtest is skipped with one line, or fails where CI or
// BEACON_REQUIRE_CONSUL=1 says a binary is required (see consultest). The
// groups of subtests are parallel, so they run after the function that
// called Run returns: anything the factory relies on is released with
// t.Cleanup, never with defer. The whole suite takes
// about five seconds; "go test -run TestConformance/Blocking" runs one group.
//
// What the suite holds a backend to, beyond the doc comments of
// beacon.Registry:
//
//   - Register is an upsert that replaces tags, meta, weights and the whole
//     set of checks; a check no longer listed is removed from the agent.
//     Check IDs are those Registration.CheckIDs returns.
//   - Register, Deregister and UpdateTTL are visible to Instances as soon as
//     they return (Consul's agent syncs its catalog before answering).
//   - Deregister of an unknown ID, or of one already gone, returns nil.
//   - Every check kind reaches the agent as asked, and the agent's verdict
//     is what Instances reports: a gRPC check follows a real gRPC health
//     server (SERVING passing, NOT_SERVING critical; cleartext and TLS), an
//     H2PING check an HTTP/2 server (h2c and TLS; critical once it stops),
//     an alias check the service or node it mirrors.
//   - Instance IDs may hold any character Registration allows, URL delimiters
//     such as '/', '#', '?' and '%' included.
//   - Invalid input is refused with a *beacon.ValidationError whose Field
//     names what Registration.Validate, Query.Validate, beacon.ValidateID and
//     beacon.ValidateTTLUpdate name, and nothing invalid reaches the agent.
//   - An unknown check is beacon.ErrNotFound; an agent that cannot be reached
//     is beacon.ErrUnavailable; a refused ACL token is
//     beacon.ErrPermissionDenied, as a *beacon.StatusError carrying Consul's
//     status code.
//   - Instances passes Consul's index through unchanged in
//     QueryMeta.LastIndex and blocks as Consul does: it returns when the
//     index passes WaitIndex or when WaitTime ends, and it ends with an error
//     matching context.Canceled when the caller's context is cancelled.
//   - A beacon.DatacenterLister (optional; skipped otherwise) names its
//     agent's datacenter, lists every federated datacenter with the local
//     one first, and reports every server's WAN coordinate, so that
//     beacon.NearestDatacenters ranks them with finite RTTs; coordinates
//     disabled are a 401 *beacon.StatusError, and a token without
//     agent:read is beacon.ErrPermissionDenied from LocalDatacenter. A
//     Query with a Datacenter reads that datacenter through the agent.
//   - A backend that implements beacon.PreparedQueries creates, reads,
//     lists, updates, deletes and executes prepared queries (by ID or by any
//     valid name, escaped on the wire); deleting a query already gone
//     succeeds, updating one is beacon.ErrNotFound; an execution reports the
//     datacenter that answered and its failovers, on a real two-datacenter
//     federation too. Backends without the capability skip these cases.
//
// RunHostile takes the same Factory and checks the backend against fake
// agents (FakeAgent, which a backend's own tests of its request shapes use
// too), for what a real agent cannot be made to do: malformed, oversized
// and truncated answers, arbitrary statuses and redirects, agents that hang,
// and the exact requests sent (tokens, escaping, nothing sent for invalid
// input). It needs no consul binary; its doc comment lists what it holds a
// backend to. A backend runs both:
//
//	func TestHostileAgent(t *testing.T) {
//		registrytest.RunHostile(t, newRegistry)
//	}
//
// Memory is the package's third part, and Beacon's one fake of
// beacon.Registry: an in-memory agent with fault injection (failed,
// hung and refused calls, an index that goes backwards, a restart that
// loses every registration), so that logic built on a registry is tested
// without a consul binary:
//
//	m := registrytest.NewMemory()
//	m.FailNext(registrytest.OpRegister, beacon.ErrUnavailable)
//	backend := func(consul.Config) (beacon.Registry, error) { return m, nil }
//	k, err := keeper.New(cfg, reg, keeper.WithBackend(backend))
package registrytest
