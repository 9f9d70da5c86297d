package consulkit_test

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/go-kit/log"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulkit"
	"github.com/beaconsd/beacon/registrytest"
)

// An existing go-kit client stack (Endpointer, round robin, retry) sitting
// on Beacon: consulkit.NewInstancer is go-kit's sd.Instancer over any
// beacon.Lookup. A program passes the *consulkit.Client that consulkit.New
// returns for its agent; this example passes registrytest's in-memory
// registry, so that it runs without Consul (TestInstancerFeedsGoKitEndpointer
// runs the same stack on a real agent).
func ExampleNewInstancer() {
	registry := registrytest.NewMemory() // a program: consulkit.New(cfg)

	ctx := context.Background()
	for i, port := range []int{8081, 8082} {
		err := registry.Register(ctx, beacon.Registration{
			ID: fmt.Sprintf("hello-%d", i+1), Service: "hello", Address: "127.0.0.1", Port: port,
			Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}},
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}

	instancer := consulkit.NewInstancer(registry, beacon.Query{Service: "hello"}, log.NewNopLogger())
	defer instancer.Stop()
	factory := func(instance string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return "answered by " + instance, nil }, nil, nil
	}
	endpointer := sd.NewEndpointer(instancer, factory, log.NewNopLogger())
	defer endpointer.Close()
	call := lb.Retry(3, 5*time.Second, lb.NewRoundRobin(endpointer))

	// The Instancer's first answer arrives asynchronously, as in go-kit.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if eps, _ := endpointer.Endpoints(); len(eps) == 2 || time.Now().After(deadline) {
			break
		}
	}
	for range 4 {
		resp, err := call(ctx, nil)
		fmt.Println(resp, err)
	}
	// Output:
	// answered by 127.0.0.1:8081 <nil>
	// answered by 127.0.0.1:8082 <nil>
	// answered by 127.0.0.1:8081 <nil>
	// answered by 127.0.0.1:8082 <nil>
}
