package consulhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
)

// TestInstancesReuseSeesChanges: a service large enough for reuse (100
// instances), read again after one instance changed its port and another
// left, gives what a fresh client reads, whatever the first client kept.
func TestInstancesReuseSeesChanges(t *testing.T) {
	srv := consultest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 100
	for i := range n {
		srv.RegisterExternal(t, fmt.Sprintf("reuse-node-%d", i/10), fmt.Sprintf("10.0.0.%d", i/10+1),
			consultest.ExternalInstance{ID: fmt.Sprintf("big-%d", i), Service: "big", Port: 8000 + i})
	}
	c := newClient(t, srv.Config())
	q := beacon.Query{Service: "big"}
	first, _, err := c.Instances(ctx, q)
	if err != nil || len(first) != n {
		t.Fatalf("Instances(big) = %d instances, %v; want %d", len(first), err, n)
	}
	// Change one entry's content (its port) and remove another.
	srv.RegisterExternal(t, "reuse-node-0", "10.0.0.1", consultest.ExternalInstance{ID: "big-3", Service: "big", Port: 9999})
	body := strings.NewReader(`{"Node":"reuse-node-1","ServiceID":"big-15"}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL()+"/v1/catalog/deregister", body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("deregister big-15: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("deregister big-15: %s", resp.Status)
	}
	http.DefaultClient.CloseIdleConnections() // goleak

	again, _, err := c.Instances(ctx, q)
	if err != nil {
		t.Fatalf("Instances(big) again = %v", err)
	}
	fresh, _, err := newClient(t, srv.Config()).Instances(ctx, q)
	if err != nil {
		t.Fatalf("Instances(big) from a fresh client = %v", err)
	}
	if !reflect.DeepEqual(again, fresh) {
		t.Fatalf("Instances(big) after a change = %+v\nwant what a fresh client reads: %+v", again, fresh)
	}
	if len(again) != n-1 {
		t.Fatalf("Instances(big) after removing one = %d instances, want %d", len(again), n-1)
	}
	for _, in := range again {
		if in.ID == "big-3" && in.Port != 9999 {
			t.Fatalf("Instances(big): big-3 has port %d after the change, want 9999", in.Port)
		}
	}
	// The caller owns its slice: changing it does not change the next answer.
	for i := range again {
		again[i].Port = 1
	}
	third, _, err := c.Instances(ctx, q)
	if err != nil || !reflect.DeepEqual(third, fresh) {
		t.Fatalf("Instances(big) after the caller changed its slice = %v, %v; want %v", third, err, fresh)
	}
}
