// Package consul holds the connection settings every Beacon backend shares:
// agent addresses, ACL token (or a token file that is re-read when it
// changes), HTTP basic auth, TLS and mTLS, datacenter, namespace and
// partition. FromEnv reads the CONSUL_* variables the consul CLI and
// hashicorp/consul/api read, with the same meaning.
//
// It depends on the standard library only.
package consul
