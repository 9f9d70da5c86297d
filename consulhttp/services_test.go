package consulhttp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

// realSummariesAnswer is a Consul 1.14.8 dev agent's GET
// /v1/internal/ui/services (written indented, as the agent writes it):
// web has an instance on the agent and one on an external node whose
// serfHealth is critical.
const realSummariesAnswer = `[
    {
        "Name": "consul",
        "Datacenter": "dc1",
        "Tags": null,
        "Nodes": [
            "vm"
        ],
        "ExternalSources": null,
        "InstanceCount": 1,
        "ChecksPassing": 1,
        "ChecksWarning": 0,
        "ChecksCritical": 0,
        "GatewayConfig": {},
        "TransparentProxy": false,
        "ConnectNative": false,
        "ConnectedWithProxy": false,
        "ConnectedWithGateway": false
    },
    {
        "Name": "web",
        "Datacenter": "dc1",
        "Tags": [
            "a",
            "b",
            "c"
        ],
        "Nodes": [
            "ext1",
            "vm"
        ],
        "ExternalSources": null,
        "InstanceCount": 2,
        "ChecksPassing": 2,
        "ChecksWarning": 1,
        "ChecksCritical": 1,
        "GatewayConfig": {},
        "TransparentProxy": false,
        "ConnectNative": false,
        "ConnectedWithProxy": false,
        "ConnectedWithGateway": false
    }
]
`

func TestDecodeRealSummaries(t *testing.T) {
	got, meta, err := decodeSummaries(indexed("19"), strings.NewReader(realSummariesAnswer))
	if err != nil {
		t.Fatalf("decodeSummaries(realSummariesAnswer) = %v, want no error", err)
	}
	if meta.LastIndex != 19 {
		t.Errorf("decodeSummaries(realSummariesAnswer) index = %d, want 19", meta.LastIndex)
	}
	if len(got) != 2 {
		t.Fatalf("decodeSummaries(realSummariesAnswer) = %+v, want 2 summaries", got)
	}
	want := []beacon.ServiceSummary{
		{Name: "consul", Instances: 1, Passing: 1},
		{Name: "web", Instances: 2, Passing: 2, Warning: 1, Critical: 1},
	}
	for i := range want {
		g := got[i]
		g.Digest = 0
		if g != want[i] {
			t.Errorf("decodeSummaries(realSummariesAnswer)[%d] = %+v, want %+v", i, g, want[i])
		}
	}
}

// TestSummaryDigest: the digest follows the nodes and tags as sets: their
// order does not change it, a node or tag more or less does, and a node
// named like a tag is not that tag.
func TestSummaryDigest(t *testing.T) {
	digest := func(nodes, tags string) uint64 {
		t.Helper()
		body := `[{"Name":"web","Nodes":` + nodes + `,"Tags":` + tags + `,"InstanceCount":1}]`
		got, _, err := decodeSummaries(indexed("1"), strings.NewReader(body))
		if err != nil || len(got) != 1 {
			t.Fatalf("decodeSummaries(%s) = %v, %v; want one summary", body, got, err)
		}
		return got[0].Digest
	}
	base := digest(`["n1","n2"]`, `["a","b"]`)
	for _, tc := range []struct {
		nodes, tags string
		same        bool
	}{
		{`["n2","n1"]`, `["b","a"]`, true},
		{` [ "n1" , "n2" ] `, `["a","b"]`, true},
		{`["n1"]`, `["a","b"]`, false},
		{`["n1","n2","n3"]`, `["a","b"]`, false},
		{`["n1","n2"]`, `["a"]`, false},
		{`["n1","n2","a"]`, `["b"]`, false},
		{`["n1","n2"]`, `null`, false},
	} {
		if got := digest(tc.nodes, tc.tags); (got == base) != tc.same {
			t.Errorf("digest(%s, %s) == digest of [n1 n2], [a b]: %v, want %v", tc.nodes, tc.tags, got == base, tc.same)
		}
	}
	if a, b := digest(`null`, `[]`), digest(`[]`, `null`); a != b {
		t.Errorf("digest(null, []) = %x, digest([], null) = %x, want equal (both empty)", a, b)
	}
}

// FuzzDecodeSummaries: /v1/internal/ui/services answers decode to what
// encoding/json reads of them, one summary per entry with a name and no
// negative count, or fail as malformed; never a panic.
func FuzzDecodeSummaries(f *testing.F) {
	for _, seed := range []struct{ body, index string }{
		{realSummariesAnswer, "19"},
		{realSummariesAnswer[:len(realSummariesAnswer)/3], "19"},
		{"[]", "1"},
		{"null", "1"},
		{"[null]", "1"},
		{"{}", "1"},
		{`[{"Name":"a","Nodes":["x\"y","z\\"],"Tags":["\u0041"]}]`, "1"},
		{`[{"Name":"a","Nodes":[null]}]`, "1"},
		{`[{"Name":"a","Nodes":[1]}]`, "1"},
		{`[{"Name":"a","Nodes":"n"}]`, "1"},
		{`[{"Name":"a","InstanceCount":-1}]`, "1"},
		{`[{"Name":"a","ChecksPassing":1e30}]`, "1"},
		{`[{"Name":"a"},{"Nodes":["n"]}]`, "1"},
		{`[] []`, "1"},
		{"[]", "x"},
	} {
		f.Add([]byte(seed.body), seed.index)
	}
	type plain struct {
		Name                                         string
		Nodes, Tags                                  []string
		InstanceCount                                int
		ChecksPassing, ChecksWarning, ChecksCritical int
	}
	f.Fuzz(func(t *testing.T, body []byte, index string) {
		got, meta, err := decodeSummaries(indexed(index), strings.NewReader(string(body)))
		wantMalformed(t, "decodeSummaries", body, err)
		var entries []plain
		uerr := json.Unmarshal(body, &entries)
		if err != nil {
			if got != nil || meta != (beacon.QueryMeta{}) {
				t.Fatalf("decodeSummaries(%q) = %v, %+v with error %v, want nothing", body, got, meta, err)
			}
			return
		}
		if uerr != nil {
			t.Fatalf("decodeSummaries(%q) = %d summaries; json.Unmarshal fails: %v", body, len(got), uerr)
		}
		if len(entries) != len(got) {
			t.Fatalf("decodeSummaries(%q) = %d summaries; json.Unmarshal sees %d", body, len(got), len(entries))
		}
		for i, e := range entries {
			g := got[i]
			if g.Name == "" || g.Name != e.Name || g.Instances != e.InstanceCount || g.Passing != e.ChecksPassing ||
				g.Warning != e.ChecksWarning || g.Critical != e.ChecksCritical || min(g.Instances, g.Passing, g.Warning, g.Critical) < 0 {
				t.Fatalf("decodeSummaries(%q)[%d] = %+v; json.Unmarshal reads %+v", body, i, g, e)
			}
		}
	})
}

// TestDecodeSummariesErrors: what is wrong with an answer is said, typed.
func TestDecodeSummariesErrors(t *testing.T) {
	for _, body := range []string{`{}`, `[{"Name":""}]`, `[{"Name":"a","Nodes":[1]}]`, `[]x`, `[`} {
		if _, _, err := decodeSummaries(indexed("1"), strings.NewReader(body)); !errors.Is(err, beacon.ErrMalformedResponse) {
			t.Errorf("decodeSummaries(%q) = %v, want an error matching beacon.ErrMalformedResponse", body, err)
		}
	}
}
