// Package consulkit implements beacon.Registry on go-kit's sd/consul client
// and hashicorp/consul/api: the second client of the original SayHello
// tutorial (the one on go-kit's Consul client, after its raw-HTTP one),
// held to the same contract as consulhttp by the registrytest conformance
// suite.
//
// go-kit's client registers, deregisters and looks services up; it takes no
// context for register and deregister (those calls are bounded by the HTTP
// client's timeout instead), updates no TTL, cannot replace a registration's
// checks, cannot send a cleartext H2PING check (consul/api's
// AgentServiceCheck leaves a false H2PingUseTLS out, and Consul reads a
// missing one as true), and filters by one tag only. consul/api fills those
// gaps (the H2PING one through its raw writer), and
// serves prepared queries (beacon.PreparedQueries) through its PreparedQuery
// client. The
// Client also offers go-kit's own views, sd.Instancer and sd.Registrar, so an
// existing go-kit Endpointer and load balancer can sit on Beacon.
package consulkit
