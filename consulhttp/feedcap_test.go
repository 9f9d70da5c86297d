package consulhttp_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/registrytest"
)

// TestFeedQueriesCapScales: the change feed's answers grow with the
// datacenter, so their cap is a multiple of the client's: an answer of
// service summaries four times the client's cap is read, while a health
// answer of that size is refused as before.
//
// This test can fail: with the client's own cap on the feed's queries,
// ServiceSummaries fails as Instances does.
func TestFeedQueriesCapScales(t *testing.T) {
	const limit = 4 << 10
	var sb strings.Builder
	sb.WriteString("[")
	for i := 0; sb.Len() < 4*limit; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`{"Name":"svc-` + strings.Repeat("x", 40) + string(rune('a'+i%26)) + `","Nodes":["n1","n2"],"InstanceCount":2,"ChecksPassing":4}`)
	}
	sb.WriteString("]")
	big := sb.String()
	f := registrytest.NewFakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Consul-Index", "7")
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/internal/ui/services":
			_, _ = w.Write([]byte(big))
		case "/v1/health/service/web":
			_, _ = w.Write([]byte(`[` + strings.Repeat(" ", 4*limit) + `]`))
		default:
			http.NotFound(w, r)
		}
	})
	c := newClient(t, f.Config(consul.Config{}), consulhttp.WithMaxBodyBytes(limit))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, _, err := c.ServiceSummaries(ctx, beacon.ServicesQuery{})
	if err != nil || len(list) == 0 {
		t.Fatalf("ServiceSummaries() of %d bytes with a cap of %d = %d summaries, %v; want them all", len(big), limit, len(list), err)
	}
	if _, _, err := c.Instances(ctx, beacon.Query{Service: "web"}); !errors.Is(err, beacon.ErrMalformedResponse) {
		t.Errorf("Instances() of %d bytes with a cap of %d = %v, want beacon.ErrMalformedResponse", 4*limit+2, limit, err)
	}
}
