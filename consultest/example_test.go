package consultest_test

import (
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
)

// A test of yours starts a real agent with NewServer and talks to it with
// the configuration the agent hands out; the agent is gone when the test
// ends. Without a consul binary the test is skipped with one line naming
// CONSUL_BIN and PATH (or fails, when CI or BEACON_REQUIRE_CONSUL=1 is
// set). In your package the function below is
// func TestRegister(t *testing.T); this example is compiled, not run
// (TestExampleNewServer runs it).
func ExampleNewServer() {
	testRegister := func(t *testing.T) {
		srv := consultest.NewServer(t)
		client, err := consulhttp.New(srv.Config())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })

		ctx := t.Context()
		err = client.Register(ctx, beacon.Registration{
			ID: "hello-1", Service: "hello", Address: "127.0.0.1", Port: 8080,
			Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}},
		})
		if err != nil {
			t.Fatalf("Register() = %v", err)
		}
		got, _, err := client.Instances(ctx, beacon.Query{Service: "hello"})
		if err != nil || len(got) != 1 || got[0].ID != "hello-1" {
			t.Fatalf("Instances(hello) = %v, %v; want hello-1", got, err)
		}
	}
	exampleTest = testRegister
}

// exampleTest is what ExampleNewServer shows, kept so that a test runs it.
var exampleTest func(t *testing.T)

func TestExampleNewServer(t *testing.T) {
	ExampleNewServer()
	exampleTest(t)
}
