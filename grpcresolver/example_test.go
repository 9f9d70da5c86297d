package grpcresolver_test

import (
	"context"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/grpcresolver"
)

// A client of the "hello" service's instances tagged v2, spreading RPCs
// over all of them. It needs a Consul agent (CONSUL_HTTP_ADDR, default
// 127.0.0.1:8500), so it is compiled, not run.
func Example() {
	cfg, err := consul.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cache, err := discovery.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close() // after the connection: deferred calls run last first

	conn, err := grpc.NewClient("consul:///hello?tag=v2",
		grpc.WithResolvers(grpcresolver.NewBuilder(cache)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	log.Println(resp.GetStatus())
}
