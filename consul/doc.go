// Package consul holds the connection settings every Beacon backend shares:
// agent addresses, ACL token (or a token file that is re-read when it
// changes), HTTP basic auth, TLS and mTLS, datacenter, namespace and
// partition. FromEnv reads the CONSUL_* variables the consul CLI and
// hashicorp/consul/api read, with the same meaning.
//
// Backend is the one type for a backend factory that keeper and discovery
// take. The package depends on the standard library and the root beacon
// package (for Backend's result) only.
package consul
