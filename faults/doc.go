// Package faults holds no code of its own: its tests are Beacon's fault
// suite. Each one starts a real Consul cluster (three servers and client
// agents on distinct loopback addresses, see consultest.NewCluster),
// registers SayHello instances through the client agents with a keeper,
// sends a steady stream of calls through discovery and the httpclient
// RoundTripper, breaks part of the cluster, and checks the pass criteria
// written at the top of the test.
//
// Under `make test` the outages last 5 seconds. `make faults`
// (BEACON_FAULTS=1) runs the same scenarios with 30-second outages and,
// with BEACON_FAULTS_DOC set to a markdown file, writes the table of
// figures into it (docs/reliability.md). With BEACON_STRESS=1 each
// scenario runs beside a CPU hog (testutil.StressIfAsked), and `make
// faults-stress` writes its own table next to the calm one.
//
// Many datacenters: federation_test.go runs four scenarios on a WAN
// federation (consultest.NewFederation) with callers in dc1 whose caches
// fail over to dc2 (discovery.WithFailover): every dc1 instance stops and
// calls move to dc2, they return and calls come back after the hold-down,
// dc2's servers go down, dc1 loses its quorum. Their figures go into a
// table of their own.
//
// Duplicates: callers must never list an instance twice; the catalog's
// duplicate window after an agent returns is measured in ms (dup_test.go)
// and, with -v, logged with a timeline of what the catalog, the agents
// and the keepers did.
package faults
