// Package e2e holds no code of its own: its tests follow one instance
// through every layer a user strings together (keeper, a real Consul
// agent, the discovery cache, httpclient and grpcresolver), for what no
// single package's tests can show, such as an instance on IPv6.
package e2e
