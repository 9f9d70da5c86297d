// Package beacon holds the types, the Registry contract, validation and errors
// shared by every Beacon backend. It depends on the standard library only.
//
// A Registry registers service instances with a Consul agent, updates their
// TTL checks, deregisters them, and looks instances up, once or as a blocking
// query. Backends live in sub-packages: consulhttp (net/http only) and
// consulkit (go-kit sd/consul on hashicorp/consul/api). Everything is
// validated before anything is sent; a *ValidationError names the field.
//
// NearestDatacenters ranks the datacenters of a WAN federation by Consul's
// estimated round-trip time from the local one, for a backend that is a
// DatacenterLister.
package beacon
