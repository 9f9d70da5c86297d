package consulhttp

import (
	"encoding/json"
	"errors"
	"hash/maphash"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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
		{realHealthAnswer, "18"},
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
		{taggedHealthAnswer, "9"},
		{`[{"Node":{"Node":"n","TaggedAddresses":{"wan":7}},"Service":{"ID":"s"}}]`, "7"},
		{`[{"Node":{"Node":"n"},"Service":{"ID":"s","TaggedAddresses":{"wan":{"Address":"::1","Port":1e10}}}}]`, "7"},
		{`[{"Node":{"Node":"n","TaggedAddresses":null},"Service":{"ID":"s","TaggedAddresses":{"wan":null,"":{}}}}]`, "7"},
		{nodeMetaHealthAnswer, "7"},
		{`[{"Node":{"Node":"n","Meta":{"zone":7}},"Service":{"ID":"s"}}]`, "7"},
		{`[{"Node":{"Node":"n","Meta":null},"Service":{"ID":"s"}},{"Node":{"Node":"n","Meta":{"consul-x":"1","":""}},"Service":{"ID":"t"}}]`, "7"},
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
		if !json.Valid(body) {
			t.Fatalf("decodeHealth(%q) accepted invalid JSON", body)
		}
		for i, in := range insts {
			if in.ID == "" {
				t.Fatalf("decodeHealth(%q, index %q)[%d] has an empty ID: %+v", body, index, i, in)
			}
			if !in.Health.Valid() {
				t.Fatalf("decodeHealth(%q, index %q)[%d].Health = %q, want passing, warning or critical", body, index, i, in.Health)
			}
			checkCompact(t, in)
			if in.NodeMeta != nil && len(in.NodeMeta) == 0 {
				t.Fatalf("decodeHealth(%q)[%d].NodeMeta is empty, not nil", body, i)
			}
			for k := range in.NodeMeta {
				if strings.HasPrefix(k, "consul-") {
					t.Fatalf("decodeHealth(%q)[%d].NodeMeta keeps Consul's own key %q", body, i, k)
				}
			}
		}
	})
}

// checkCompact fails unless in's tagged addresses are as
// beacon.CompactTaggedAddresses promises: nil or non-empty, no entry
// without an address or restating the instance's own.
func checkCompact(t *testing.T, in beacon.Instance) {
	t.Helper()
	if in.TaggedAddresses != nil && len(in.TaggedAddresses) == 0 || in.NodeTaggedAddresses != nil && len(in.NodeTaggedAddresses) == 0 {
		t.Fatalf("instance %+v has empty, non-nil tagged addresses", in)
	}
	for k, v := range in.TaggedAddresses {
		if v.Address == "" || v.Address == in.Address && (v.Port == in.Port || v.Port == 0) {
			t.Fatalf("instance %+v keeps tagged address %q = %+v, which says nothing", in, k, v)
		}
	}
	for k, v := range in.NodeTaggedAddresses {
		if v == "" || v == in.Address {
			t.Fatalf("instance %+v keeps node tagged address %q = %q, which says nothing", in, k, v)
		}
	}
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

// wantMalformed fails unless err is nil or matches beacon.ErrMalformedResponse:
// decoders given a whole answer in memory never see a connection fail.
func wantMalformed(t *testing.T, what string, input []byte, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, beacon.ErrMalformedResponse) {
		t.Fatalf("%s(%q) = %v, want an error matching beacon.ErrMalformedResponse", what, input, err)
	}
}

// FuzzDecodeMeta: the X-Consul-* headers decode exactly as strconv reads
// them, or fail as malformed with nothing half-filled.
func FuzzDecodeMeta(f *testing.F) {
	for _, seed := range [][4]string{
		{"42", "true", "15", "true"},
		{"18", "true", "0", ""},
		{"7", "", "", ""},
		{"", "true", "", ""},
		{"18446744073709551615", "false", "4294967295", "false"},
		{"18446744073709551616", "", "", ""},
		{"+1", "TRUE", "-1", "1"},
		{"0x10", "", "1e3", ""},
		{" 7", "", "7 ", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, index, leader, contact, filtered string) {
		h := http.Header{}
		h.Set("X-Consul-Index", index)
		h.Set("X-Consul-KnownLeader", leader)
		h.Set("X-Consul-LastContact", contact)
		h.Set("X-Consul-Results-Filtered-By-ACLs", filtered)
		m, err := decodeMeta(h)
		in := []byte(strings.Join([]string{index, leader, contact, filtered}, "|"))
		wantMalformed(t, "decodeMeta", in, err)
		idx, idxErr := strconv.ParseUint(index, 10, 64)
		ms, msErr := strconv.ParseUint(contact, 10, 32)
		if contact == "" {
			msErr = nil
		}
		if (err == nil) != (idxErr == nil && msErr == nil) {
			t.Fatalf("decodeMeta(%q) = %+v, %v; want an error exactly when an index or contact is not a number", in, m, err)
		}
		if err != nil {
			if m != (beacon.QueryMeta{}) {
				t.Fatalf("decodeMeta(%q) = %+v with error %v, want a zero QueryMeta", in, m, err)
			}
			return
		}
		want := beacon.QueryMeta{LastIndex: idx, KnownLeader: leader == "true", LastContact: time.Duration(ms) * time.Millisecond, FilteredByACLs: filtered == "true"}
		if m != want {
			t.Fatalf("decodeMeta(%q) = %+v, want %+v", in, m, want)
		}
	})
}

// FuzzDecodeChecks: /v1/health/state/any answers decode to one state per
// entry, each a valid health, or fail as malformed.
func FuzzDecodeChecks(f *testing.F) {
	for _, seed := range []struct{ body, index string }{
		{realChecksAnswer, "18"},
		{realChecksAnswer[:len(realChecksAnswer)/3], "18"},
		{"[]", "1"},
		{"null", "1"},
		{"[null]", "1"},
		{`[{"Node":"n","CheckID":"c","Status":"maintenance","ModifyIndex":-1}]`, "1"},
		{`[{"Status":null}] `, "1"},
		{`[{"ModifyIndex":1e30}]`, "1"},
		{"[]", "x"},
	} {
		f.Add([]byte(seed.body), seed.index)
	}
	f.Fuzz(func(t *testing.T, body []byte, index string) {
		checks, meta, err := decodeChecks(indexed(index), strings.NewReader(string(body)))
		wantMalformed(t, "decodeChecks", body, err)
		if err != nil {
			if checks != nil || meta != (beacon.QueryMeta{}) {
				t.Fatalf("decodeChecks(%q) = %v, %+v with error %v, want nothing", body, checks, meta, err)
			}
			return
		}
		var entries []json.RawMessage
		if err := json.Unmarshal(body, &entries); err != nil || len(entries) != len(checks) {
			t.Fatalf("decodeChecks(%q) = %d checks; json.Unmarshal sees %d entries (%v)", body, len(checks), len(entries), err)
		}
		for i, c := range checks {
			if !c.Status.Valid() {
				t.Fatalf("decodeChecks(%q)[%d].Status = %q, want passing, warning or critical", body, i, c.Status)
			}
		}
	})
}

// FuzzDecodeAgentService: an agent's answer about one service decodes to
// an instance with an ID, or fails as malformed.
func FuzzDecodeAgentService(f *testing.F) {
	for _, seed := range []string{
		realAgentServiceAnswer,
		realAgentServiceEscapedAnswer,
		realAgentServiceAnswer[:40],
		`{}`, `null`, `{"ID":""}`, `{"ID":"a","Port":1e10}`, `{"ID":"a","Meta":[]}`, `{"ID":"\ud800"}`, `{"ID":"a"}{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := decodeAgentService(strings.NewReader(string(body)))
		wantMalformed(t, "decodeAgentService", body, err)
		if err != nil {
			return
		}
		if in.ID == "" || !json.Valid(body) {
			t.Fatalf("decodeAgentService(%q) = %+v, want an instance with an ID from valid JSON", body, in)
		}
		checkCompact(t, in)
	})
}

// FuzzDecodeServices: the catalog's service list decodes to unique names in
// order, each with sorted, non-nil tags, or fails as malformed.
func FuzzDecodeServices(f *testing.F) {
	for _, seed := range []struct{ body, index string }{
		{realServicesAnswer, "18"},
		{`{"b":null,"a":["z","y","z"]}`, "1"},
		{`{"a":[],"a":["x"]}`, "1"},
		{`{}`, "1"},
		{`null`, "1"},
		{`[]`, "1"},
		{`{"a":[1]}`, "1"},
		{realServicesAnswer, ""},
	} {
		f.Add([]byte(seed.body), seed.index)
	}
	f.Fuzz(func(t *testing.T, body []byte, index string) {
		svcs, _, err := decodeServices(indexed(index), strings.NewReader(string(body)))
		wantMalformed(t, "decodeServices", body, err)
		if err != nil {
			return
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil || len(raw) != len(svcs) {
			t.Fatalf("decodeServices(%q) = %d services; json.Unmarshal sees %d (%v)", body, len(svcs), len(raw), err)
		}
		for i, s := range svcs {
			if i > 0 && svcs[i-1].Name >= s.Name {
				t.Fatalf("decodeServices(%q): %q before %q, want unique names in order", body, svcs[i-1].Name, s.Name)
			}
			if s.Tags == nil || !slices.IsSorted(s.Tags) {
				t.Fatalf("decodeServices(%q)[%d].Tags = %#v, want sorted and non-nil", body, i, s.Tags)
			}
		}
	})
}

// FuzzDecodeOperator feeds one body to the leader, agent self and token
// self decoders: each fails as malformed exactly when encoding/json's
// strict Unmarshal refuses the body for the same shape, and otherwise
// agrees with it.
func FuzzDecodeOperator(f *testing.F) {
	for _, seed := range []string{
		realLeaderAnswer, `""`, realSelfAnswer, realTokenSelfAnswer,
		`null`, `{}`, `"a" "b"`, `"\ud83d"`, `{"Config":null}`, `{"Config":{"Server":"yes"}}`,
		`{"Policies":[null,{"Name":1}]}`, `{"Roles":{}}`, realSelfAnswer[:50],
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		leader, err := decodeLeader(strings.NewReader(string(body)))
		wantMalformed(t, "decodeLeader", body, err)
		var wantLeader string
		if uerr := json.Unmarshal(body, &wantLeader); (err == nil) != (uerr == nil) || leader != wantLeader && err == nil {
			t.Fatalf("decodeLeader(%q) = %q, %v; json.Unmarshal: %q, %v", body, leader, err, wantLeader, uerr)
		}

		self, err := decodeSelf(strings.NewReader(string(body)))
		wantMalformed(t, "decodeSelf", body, err)
		var rawSelf struct {
			Config struct {
				NodeName, Datacenter, Version string
				Server                        bool
			}
		}
		uerr := json.Unmarshal(body, &rawSelf)
		if (err == nil) != (uerr == nil) {
			t.Fatalf("decodeSelf(%q) = %v; json.Unmarshal: %v", body, err, uerr)
		}
		if c := rawSelf.Config; err == nil && self != (AgentInfo{Node: c.NodeName, Datacenter: c.Datacenter, Version: c.Version, Server: c.Server}) {
			t.Fatalf("decodeSelf(%q) = %+v; json.Unmarshal: %+v", body, self, c)
		}

		tok, err := decodeTokenSelf(strings.NewReader(string(body)))
		wantMalformed(t, "decodeTokenSelf", body, err)
		var rawTok struct {
			AccessorID, Description string
			Policies, Roles         []struct{ Name string }
		}
		uerr = json.Unmarshal(body, &rawTok)
		if err == nil && uerr != nil {
			t.Fatalf("decodeTokenSelf(%q) = %+v; json.Unmarshal refuses it: %v", body, tok, uerr)
		}
		if err == nil && (tok.AccessorID != rawTok.AccessorID || len(tok.Policies) != len(rawTok.Policies) || len(tok.Roles) != len(rawTok.Roles)) {
			t.Fatalf("decodeTokenSelf(%q) = %+v; json.Unmarshal: %+v", body, tok, rawTok)
		}
	})
}

// FuzzDecodeHealthReusing: decoding body after prev, reusing prev's
// instances for entries whose bytes did not change, gives exactly what
// decoding body alone gives, errors included, and never panics.
func FuzzDecodeHealthReusing(f *testing.F) {
	two := `[` + realHealthAnswer[1:len(realHealthAnswer)-1] + `,` + healthAnswer[1:len(healthAnswer)-1] + `]`
	for _, seed := range []struct{ prev, body string }{
		{healthAnswer, healthAnswer},
		{two, healthAnswer},
		{healthAnswer, two},
		{two, strings.Replace(two, `"passing"`, `"critical"`, 1)},
		{two, strings.Replace(two, `"web-1"`, `"web-2"`, 1)},
		{healthAnswer, healthAnswer[:len(healthAnswer)-1]},
		{healthAnswer, healthAnswer + " x"},
		{healthAnswer, `[` + healthAnswer[1:len(healthAnswer)-1] + `,null]`},
		{healthAnswer, `[` + healthAnswer[1:len(healthAnswer)-1] + `,` + healthAnswer[1:len(healthAnswer)-1] + `]`},
		{`[{"a":"\\\""}]`, `[{"a":"\\\""},{"a":"]}"}]`},
		{"[]", "[ ]"},
		{taggedHealthAnswer, nodeMetaHealthAnswer},
	} {
		f.Add([]byte(seed.prev), []byte(seed.body))
	}
	seed := maphash.MakeSeed()
	f.Fuzz(func(t *testing.T, prevBody, body []byte) {
		h := http.Header{}
		h.Set("X-Consul-Index", "7")
		_, _, prev, _ := decodeHealthReusing(h, strings.NewReader(string(prevBody)), seed, nil, 1)
		got, gotMeta, _, err := decodeHealthReusing(h, strings.NewReader(string(body)), seed, prev, 1)
		want, wantMeta, wantErr := decodeHealth(h, strings.NewReader(string(body)))
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("after %q, decodeHealthReusing(%q) error = %v, decodeHealth's = %v", prevBody, body, err, wantErr)
		}
		if err != nil {
			if !errors.Is(err, beacon.ErrMalformedResponse) {
				t.Fatalf("decodeHealthReusing(%q) = %v, want an error matching beacon.ErrMalformedResponse", body, err)
			}
			return
		}
		if gotMeta != wantMeta || !reflect.DeepEqual(got, want) {
			t.Fatalf("after %q, decodeHealthReusing(%q) = %+v, %+v; decodeHealth's = %+v, %+v", prevBody, body, got, gotMeta, want, wantMeta)
		}
	})
}
