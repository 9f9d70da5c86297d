package consulhttp

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

// healthAnswer is one entry as GET /v1/health/service/web returns it.
const healthAnswer = `[{"Node":{"ID":"1f6f2c2e-0000-0000-0000-000000000000","Node":"node-1","Address":"10.0.0.1","Datacenter":"dc1"},` +
	`"Service":{"ID":"web-1","Service":"web","Tags":["v1"],"Address":"10.0.0.5","Port":8080,"Meta":{"version":"1"},"Weights":{"Passing":10,"Warning":1}},` +
	`"Checks":[{"Node":"node-1","CheckID":"serfHealth","Status":"passing"},{"Node":"node-1","CheckID":"service:web-1","Status":"warning"}]}]`

// FuzzDecodeHealth feeds decodeHealth whatever the network could send, body
// and X-Consul-Index alike: it must never panic, must only hand out
// instances with an ID, and must report every failure as malformed.
func FuzzDecodeHealth(f *testing.F) {
	for _, seed := range []struct{ body, index string }{
		{healthAnswer, "42"},
		{healthAnswer[:len(healthAnswer)/2], "42"},
		{"<html><body>502 Bad Gateway</body></html>", "42"},
		{"[]", "1"},
		{"null", "7"},
		{"[null]", "7"},
		{`[{"Node":{"Node":"n"}}]`, "7"},
		{"[] []", "7"},
		{`[{"Node":{"Node":"n"},"Service":{"ID":"s"},"Checks":[{"Status":"maintenance"},null]}]`, "7"},
		{"[]", ""},
		{"[]", "abc"},
		{"[]", "-1"},
		{"[]", "18446744073709551616"},
	} {
		f.Add([]byte(seed.body), seed.index)
	}
	f.Fuzz(func(t *testing.T, body []byte, index string) {
		h := http.Header{}
		h.Set("X-Consul-Index", index)
		insts, meta, err := decodeHealth(h, strings.NewReader(string(body)))
		if err != nil {
			if !errors.Is(err, beacon.ErrMalformedResponse) {
				t.Fatalf("decodeHealth(%q, index %q) = %v, want an error matching beacon.ErrMalformedResponse", body, index, err)
			}
			if insts != nil || meta != (beacon.QueryMeta{}) {
				t.Fatalf("decodeHealth(%q, index %q) = %v, %+v with error %v, want nothing", body, index, insts, meta, err)
			}
			return
		}
		for i, in := range insts {
			if in.ID == "" {
				t.Fatalf("decodeHealth(%q, index %q)[%d] has an empty ID: %+v", body, index, i, in)
			}
			if !in.Health.Valid() {
				t.Fatalf("decodeHealth(%q, index %q)[%d].Health = %q, want passing, warning or critical", body, index, i, in.Health)
			}
		}
	})
}

// TestDecodeHealthAnswer checks the seed answer decodes as Consul means it,
// so the fuzz target's success path is exercised for real.
func TestDecodeHealthAnswer(t *testing.T) {
	h := http.Header{}
	h.Set("X-Consul-Index", "42")
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "15")
	h.Set("X-Consul-Results-Filtered-By-ACLs", "true")
	insts, meta, err := decodeHealth(h, strings.NewReader(healthAnswer))
	if err != nil {
		t.Fatalf("decodeHealth(healthAnswer) = %v, want no error", err)
	}
	wantMeta := beacon.QueryMeta{LastIndex: 42, KnownLeader: true, LastContact: 15_000_000, FilteredByACLs: true}
	if meta != wantMeta {
		t.Errorf("decodeHealth(healthAnswer) meta = %+v, want %+v", meta, wantMeta)
	}
	if len(insts) != 1 {
		t.Fatalf("decodeHealth(healthAnswer) = %d instances, want 1", len(insts))
	}
	in := insts[0]
	if in.ID != "web-1" || in.Service != "web" || in.Node != "node-1" || in.Address != "10.0.0.5" || in.Port != 8080 ||
		in.Weights != (beacon.Weights{Passing: 10, Warning: 1}) || in.Health != beacon.HealthWarning ||
		len(in.Tags) != 1 || in.Tags[0] != "v1" || in.Meta["version"] != "1" {
		t.Errorf("decodeHealth(healthAnswer)[0] = %+v, want web-1 of web on node-1 at 10.0.0.5:8080, warning", in)
	}
}
