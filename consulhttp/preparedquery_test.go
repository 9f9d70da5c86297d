package consulhttp

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

// Answers of /v1/query captured from a Consul v1.14.8 dev agent (compacted).
const (
	realQueryCreatedAnswer = `{"ID":"979d3c25-8087-69d3-7720-09ac6d3a2855"}`
	realQueriesAnswer      = `[{"ID":"979d3c25-8087-69d3-7720-09ac6d3a2855","Name":"web-q","Session":"","Token":"","Template":{"Type":"","Regexp":"","RemoveEmptyTags":false},"Service":{"Service":"web","Failover":{"NearestN":0,"Datacenters":["dc2"],"Targets":null},"OnlyPassing":true,"IgnoreCheckIDs":null,"Near":"","Tags":["v1"],"NodeMeta":null,"ServiceMeta":null,"Connect":false,"Peer":""},"DNS":{"TTL":""},"CreateIndex":19,"ModifyIndex":19}]`
	realExecuteAnswer      = `{"Service":"web","Nodes":[{"Node":{"ID":"9bddac7b-2bf0-a28a-c6b9-3ac6edbfc7b4","Node":"vm","Address":"127.0.0.77","Datacenter":"dc1","TaggedAddresses":{"lan":"127.0.0.77","lan_ipv4":"127.0.0.77","wan":"127.0.0.77","wan_ipv4":"127.0.0.77"},"Meta":{"consul-network-segment":""},"CreateIndex":11,"ModifyIndex":17},"Service":{"ID":"web-1","Service":"web","Tags":["v1"],"Address":"","Meta":null,"Port":80,"Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"Proxy":{"Mode":"","MeshGateway":{},"Expose":{}},"Connect":{},"PeerName":"","CreateIndex":18,"ModifyIndex":18},"Checks":[{"Node":"vm","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","Notes":"","Output":"Agent alive and reachable","ServiceID":"","ServiceName":"","ServiceTags":null,"Type":"","Interval":"","Timeout":"","ExposedPort":0,"Definition":{},"CreateIndex":11,"ModifyIndex":11},{"Node":"vm","CheckID":"service:web-1","Name":"Service 'web' check","Status":"passing","Notes":"","Output":"","ServiceID":"web-1","ServiceName":"web","ServiceTags":["v1"],"Type":"ttl","Interval":"","Timeout":"","ExposedPort":0,"Definition":{},"CreateIndex":18,"ModifyIndex":27}]}],"DNS":{"TTL":""},"Datacenter":"dc1","PeerName":"","Failovers":0,"Index":1,"LastContact":0,"KnownLeader":true,"ConsistencyLevel":"leader","NotModified":false,"Backend":0,"ResultsFilteredByACLs":false}`
)

func TestDecodeExecuteAnswer(t *testing.T) {
	// Consul 1.14.8 answers every execution with X-Consul-Index 1.
	res, err := decodeExecute(indexed("1"), strings.NewReader(realExecuteAnswer))
	if err != nil {
		t.Fatalf("decodeExecute(realExecuteAnswer) = %v, want no error", err)
	}
	if res.Service != "web" || res.Datacenter != "dc1" || res.Failovers != 0 || res.Index != 1 || len(res.Instances) != 1 {
		t.Fatalf("decodeExecute(realExecuteAnswer) = %+v, want web from dc1, no failover, index 1, one instance", res)
	}
	in := res.Instances[0]
	if in.ID != "web-1" || in.Service != "web" || in.Node != "vm" || in.Address != "127.0.0.77" || in.Port != 80 || in.Health != beacon.HealthPassing {
		t.Errorf("decodeExecute(realExecuteAnswer).Instances[0] = %+v, want web-1 on vm at 127.0.0.77:80, passing", in)
	}
	// The instances are a health answer's: the same answer's nodes decode
	// to what decodeHealth makes of them.
	var raw struct{ Nodes json.RawMessage }
	if err := json.Unmarshal([]byte(realExecuteAnswer), &raw); err != nil {
		t.Fatal(err)
	}
	want, _, err := decodeHealth(indexed("1"), strings.NewReader(string(raw.Nodes)))
	if err != nil || len(want) != 1 || want[0].ID != in.ID || want[0].Health != in.Health || want[0].Address != in.Address {
		t.Errorf("decodeHealth(Nodes) = %+v, %v; want what decodeExecute made of them, %+v", want, err, in)
	}
	for _, bad := range []string{
		`{"Service":"web","Datacenter":"dc1"}`,             // no Nodes
		`{"Service":"web","Nodes":[],"Datacenter":""}`,     // no datacenter
		`{"Service":"web","Nodes":[],"Datacenter":"dc 1"}`, // not a datacenter name
		`{"Service":"web","Nodes":[],"Datacenter":"dc1","Failovers":-1}`,
		`{"Service":"web","Nodes":[{"Node":{"Node":"n"}}],"Datacenter":"dc1"}`, // an entry without a service
		`null`,
	} {
		if _, err := decodeExecute(indexed("1"), strings.NewReader(bad)); !errors.Is(err, beacon.ErrMalformedResponse) {
			t.Errorf("decodeExecute(%s) = %v, want an error matching beacon.ErrMalformedResponse", bad, err)
		}
	}
	if _, err := decodeExecute(http.Header{}, strings.NewReader(realExecuteAnswer)); !errors.Is(err, beacon.ErrMalformedResponse) {
		t.Errorf("decodeExecute without X-Consul-Index = %v, want an error matching beacon.ErrMalformedResponse", err)
	}
}

func TestDecodeQueriesAnswer(t *testing.T) {
	qs, err := decodeQueries(strings.NewReader(realQueriesAnswer))
	if err != nil || len(qs) != 1 {
		t.Fatalf("decodeQueries(realQueriesAnswer) = %+v, %v; want one definition", qs, err)
	}
	q := qs[0]
	if q.ID != "979d3c25-8087-69d3-7720-09ac6d3a2855" || q.Name != "web-q" || q.Service != "web" || !q.OnlyPassing ||
		strings.Join(q.Tags, ",") != "v1" || strings.Join(q.Failover.Datacenters, ",") != "dc2" || q.Failover.NearestN != 0 {
		t.Errorf("decodeQueries(realQueriesAnswer)[0] = %+v, want web-q on web, v1, only passing, failover to dc2", q)
	}
	if err := q.Validate(); err != nil {
		t.Errorf("decoded definition %+v: Validate() = %v, want nil", q, err)
	}
	id, err := decodeQueryCreated(strings.NewReader(realQueryCreatedAnswer))
	if err != nil || id != q.ID {
		t.Errorf("decodeQueryCreated(realQueryCreatedAnswer) = %q, %v; want %q", id, err, q.ID)
	}
}

// FuzzDecodeQueries feeds the definition decoders (GET /v1/query and
// /v1/query/:id, and POST /v1/query's {"ID"}) whatever the network could
// send: typed errors only, and every definition handed out has a query ID.
func FuzzDecodeQueries(f *testing.F) {
	for _, seed := range []string{
		realQueriesAnswer, realQueryCreatedAnswer, realQueriesAnswer[:len(realQueriesAnswer)/2],
		"[]", "null", "[null]", "{}", `[{"ID":"x"}]`, `{"ID":""}`, `{"ID":"979d3c25-8087-69d3-7720-09ac6d3a285"}`,
		`[{"ID":"979d3c25-8087-69d3-7720-09ac6d3a2855","Service":{"Failover":{"NearestN":-3}}}]`,
		`[{"ID":"979d3c25-8087-69d3-7720-09ac6d3a2855","Service":"web"}]`,
		"[] []", "<html>502</html>",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		qs, err := decodeQueries(strings.NewReader(string(body)))
		wantMalformed(t, "decodeQueries", body, err)
		if err == nil && !json.Valid(body) {
			t.Fatalf("decodeQueries(%q) accepted invalid JSON", body)
		}
		for i, q := range qs {
			if !beacon.IsQueryID(q.ID) || q.Failover.NearestN < 0 {
				t.Fatalf("decodeQueries(%q)[%d] = %+v, want a query ID and NearestN ≥ 0", body, i, q)
			}
		}
		id, err := decodeQueryCreated(strings.NewReader(string(body)))
		wantMalformed(t, "decodeQueryCreated", body, err)
		if err == nil && !beacon.IsQueryID(id) {
			t.Fatalf("decodeQueryCreated(%q) = %q, want a query ID", body, id)
		}
	})
}

// FuzzDecodeExecute feeds decodeExecute whatever the network could send,
// body and X-Consul-Index alike: typed errors only, nothing half-filled,
// and a result always names its datacenter and holds instances with IDs
// and known health.
func FuzzDecodeExecute(f *testing.F) {
	for _, seed := range []struct{ body, index string }{
		{realExecuteAnswer, "1"},
		{realExecuteAnswer[:len(realExecuteAnswer)/2], "1"},
		{`{"Service":"web","Nodes":[],"Datacenter":"dc2","Failovers":1}`, "1"},
		{`{"Service":"web","Nodes":null,"Datacenter":"dc2"}`, "1"},
		{`{"Service":"web","Datacenter":"dc2"}`, "1"},
		{`{"Nodes":[],"Datacenter":"","Failovers":-1}`, "1"},
		{`{"Nodes":[null],"Datacenter":"dc1"}`, "1"},
		{`{"Nodes":[],"Datacenter":"dc1"}`, ""},
		{`{"Nodes":[],"Datacenter":"dc1"}`, "x"},
		{`{"Nodes":{},"Datacenter":"dc1"}`, "1"},
		{"null", "1"},
		{"{} {}", "1"},
	} {
		f.Add([]byte(seed.body), seed.index)
	}
	f.Fuzz(func(t *testing.T, body []byte, index string) {
		h := http.Header{}
		h.Set("X-Consul-Index", index)
		res, err := decodeExecute(h, strings.NewReader(string(body)))
		wantMalformed(t, "decodeExecute", body, err)
		if err != nil {
			if res.Instances != nil || res.Datacenter != "" || res.Index != 0 {
				t.Fatalf("decodeExecute(%q) = %+v with error %v, want nothing", body, res, err)
			}
			return
		}
		if !json.Valid(body) || res.Datacenter == "" || beacon.ValidateDatacenter(res.Datacenter) != nil || res.Failovers < 0 || res.Instances == nil {
			t.Fatalf("decodeExecute(%q, index %q) = %+v, want valid JSON, a datacenter, Failovers ≥ 0, instances not nil", body, index, res)
		}
		for i, in := range res.Instances {
			if in.ID == "" || !in.Health.Valid() {
				t.Fatalf("decodeExecute(%q).Instances[%d] = %+v, want an ID and a known health", body, i, in)
			}
		}
	})
}

// BenchmarkDecodeExecute is the client's cost of one execution answer (one
// instance), against decodeHealth of the same entries: what polling a
// query adds to a health read.
func BenchmarkDecodeExecute(b *testing.B) {
	var raw struct{ Nodes json.RawMessage }
	if err := json.Unmarshal([]byte(realExecuteAnswer), &raw); err != nil {
		b.Fatal(err)
	}
	h := indexed("1")
	b.Run("Execute", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeExecute(h, strings.NewReader(realExecuteAnswer)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("HealthOfSameNodes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := decodeHealth(h, strings.NewReader(string(raw.Nodes))); err != nil {
				b.Fatal(err)
			}
		}
	})
}
