package httpclient_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
)

// BenchmarkRoundTrip compares a GET through the Transport with the same GET
// sent straight to the instance: the difference is what resolving,
// balancing and load accounting cost.
func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	defer srv.Close()
	port, _ := strconv.Atoi(srv.URL[len("http://127.0.0.1:"):])

	agent := consultest.NewServer(b)
	reg, err := consulhttp.New(agent.Config())
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := reg.Register(ctx, beacon.Registration{ID: "bench-0", Service: "bench", Address: "127.0.0.1", Port: port,
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}}}); err != nil {
		b.Fatal(err)
	}
	cache, err := discovery.New(agent.Config())
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()

	base := http.DefaultTransport.(*http.Transport).Clone()
	tr := httpclient.New(cache, httpclient.WithBase(base))
	defer tr.Close()
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
		url  string
	}{
		{"direct", base, srv.URL + "/x"},
		{"httpclient", tr, "http://bench/x"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, bc.url, nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
