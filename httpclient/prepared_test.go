package httpclient_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

// http://NAME.query.consul/ goes to an instance the prepared query NAME returns.
func TestPreparedQueryHost(t *testing.T) {
	e := newEnv(t)
	e.backends(t, "hello", 1)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := e.reg.CreateQuery(ctx, beacon.PreparedQuery{Name: "hello-q", Service: "hello"}); err != nil {
		t.Fatalf("CreateQuery() = %v", err)
	}
	c := &http.Client{Transport: e.transport(t)}
	body, err := get(ctx, c, "http://hello-q.query.consul/greeting")
	if err != nil || !strings.HasPrefix(body, "hello-0") {
		t.Fatalf("GET http://hello-q.query.consul/greeting = %q, %v; want hello-0's answer", body, err)
	}
	if _, err := get(ctx, c, "http://bad%2Fname.query.consul/"); err == nil {
		t.Errorf("GET of a query name with a slash succeeded, want a validation error")
	}
}
