// Package beacon holds the types, the Registry contract, validation and errors
// shared by every Beacon backend. It depends on the standard library only.
//
// A Registry registers service instances with a Consul agent, updates their
// TTL checks, deregisters them, and looks instances up, once or as a blocking
// query. Backends live in sub-packages: consulhttp (net/http only) and
// consulkit (go-kit sd/consul on hashicorp/consul/api). Everything is
// validated before anything is sent; a *ValidationError names the field.
//
// A Check is one of the kinds a Consul agent runs: HTTP, TCP, TTL, gRPC
// (the standard grpc.health.v1 service), H2PING (an HTTP/2 ping) or alias
// (mirroring another instance's or node's health). Exactly one is set.
//
// NearestDatacenters ranks the datacenters of a WAN federation by Consul's
// estimated round-trip time from the local one, for a backend that is a
// DatacenterLister.
//
// Instance.AddressFor picks the address a caller reaches an instance at:
// its WAN tagged addresses from another datacenter, its LAN ones from its
// own (Consul's translate_wan_addrs rule). Instance.HostPort joins an
// address and port for dialling, with brackets for IPv6.
package beacon
