// Package bench measures Beacon's two Consul backends, consulhttp (net/http)
// and consulkit (go-kit sd/consul), and the original SayHello tutorial's
// way of looking services up (a new lookup per call, no cache), on a real Consul agent started by consultest. The figures are quoted
// in docs/comparison.md.
//
//	go test -run '^$' -bench . -benchmem ./bench/
package bench
