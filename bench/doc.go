// Package bench measures Beacon's two Consul backends, consulhttp (net/http)
// and consulkit (go-kit sd/consul), and the original SayHello tutorial's
// way of looking services up (a new lookup per call, no cache), on a real Consul agent started by consultest. The figures are quoted
// in docs/comparison.md.
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// The fleet-scale benchmarks (WatchMany, LargeService, Fleet) are drawn as
// charts in docs/performance.md by bench/plot, which make bench-scale runs
// after them.
package bench
