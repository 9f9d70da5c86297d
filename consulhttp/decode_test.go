package consulhttp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// The decoders' success paths on answers captured from a real agent
// (answers_test.go), so the fuzz targets' seeds are known to mean what
// Consul means.

func indexed(index string) http.Header {
	h := http.Header{}
	h.Set("X-Consul-Index", index)
	return h
}

func TestDecodeRealHealthAnswer(t *testing.T) {
	insts, meta, err := decodeHealth(indexed("18"), strings.NewReader(realHealthAnswer))
	if err != nil {
		t.Fatalf("decodeHealth(realHealthAnswer) = %v, want no error", err)
	}
	want := []beacon.Instance{{
		ID: "web-1", Service: "web", Node: "vm", Address: "10.0.0.5", Port: 8080,
		Tags: []string{"v1", "canary"}, Meta: map[string]string{"version": "1.2"},
		Weights: beacon.Weights{Passing: 10, Warning: 1}, Health: beacon.HealthWarning,
	}}
	if !reflect.DeepEqual(insts, want) || meta.LastIndex != 18 {
		t.Errorf("decodeHealth(realHealthAnswer) = %+v, %+v; want %+v at index 18", insts, meta, want)
	}
}

func TestDecodeMeta(t *testing.T) {
	for _, tc := range []struct {
		name                             string
		index, leader, contact, filtered string
		backend, cache, age              string
		want                             beacon.QueryMeta
		wantErr                          bool
	}{
		{name: "all", index: "42", leader: "true", contact: "15", filtered: "true",
			want: beacon.QueryMeta{LastIndex: 42, KnownLeader: true, LastContact: 15 * time.Millisecond, FilteredByACLs: true}},
		{name: "index only", index: "7", want: beacon.QueryMeta{LastIndex: 7}},
		{name: "max index", index: "18446744073709551615", want: beacon.QueryMeta{LastIndex: 1<<64 - 1}},
		{name: "leader false", index: "7", leader: "false", want: beacon.QueryMeta{LastIndex: 7}},
		{name: "streaming", index: "7", backend: "streaming", want: beacon.QueryMeta{LastIndex: 7, Backend: beacon.QueryBackendStreaming}},
		{name: "blocking-query", index: "7", backend: "blocking-query", want: beacon.QueryMeta{LastIndex: 7, Backend: beacon.QueryBackendBlockingQuery}},
		{name: "unknown backend", index: "7", backend: "carrier-pigeon", want: beacon.QueryMeta{LastIndex: 7}},
		{name: "cache hit", index: "7", cache: "HIT", age: "12", want: beacon.QueryMeta{LastIndex: 7, AgentCache: "HIT", CacheAge: 12 * time.Second}},
		{name: "cache miss", index: "7", cache: "MISS", want: beacon.QueryMeta{LastIndex: 7, AgentCache: "MISS"}},
		{name: "garbage age ignored", index: "7", cache: "HIT", age: "old", want: beacon.QueryMeta{LastIndex: 7, AgentCache: "HIT"}},
		{name: "unknown X-Cache", index: "7", cache: "MAYBE", age: "3", want: beacon.QueryMeta{LastIndex: 7}},
		{name: "no index", wantErr: true},
		{name: "garbage index", index: "12a", wantErr: true},
		{name: "negative index", index: "-1", wantErr: true},
		{name: "index overflow", index: "18446744073709551616", wantErr: true},
		{name: "garbage contact", index: "7", contact: "soon", wantErr: true},
		{name: "contact overflow", index: "7", contact: "4294967296", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range map[string]string{"X-Consul-Index": tc.index, "X-Consul-KnownLeader": tc.leader,
				"X-Consul-LastContact": tc.contact, "X-Consul-Results-Filtered-By-ACLs": tc.filtered, "X-Consul-Query-Backend": tc.backend,
				"X-Cache": tc.cache, "Age": tc.age} {
				if v != "" {
					h.Set(k, v)
				}
			}
			got, err := decodeMeta(h)
			if tc.wantErr {
				if !errors.Is(err, beacon.ErrMalformedResponse) {
					t.Errorf("decodeMeta(%v) = %+v, %v; want ErrMalformedResponse", h, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("decodeMeta(%v) = %+v, %v; want %+v", h, got, err, tc.want)
			}
		})
	}
}

func TestDecodeRealChecksAnswer(t *testing.T) {
	got, meta, err := decodeChecks(indexed("18"), strings.NewReader(realChecksAnswer))
	want := []beacon.CheckState{
		{Node: "vm", CheckID: "serfHealth", Status: beacon.HealthPassing, ModifyIndex: 13},
		{Node: "vm", CheckID: "service:web-1", ServiceID: "web-1", ServiceName: "web", Status: beacon.HealthWarning, ModifyIndex: 18},
	}
	if err != nil || !reflect.DeepEqual(got, want) || meta.LastIndex != 18 {
		t.Errorf("decodeChecks(realChecksAnswer) = %+v, %+v, %v; want %+v at index 18", got, meta, err, want)
	}
	// A status Beacon does not know reads as critical.
	got, _, err = decodeChecks(indexed("1"), strings.NewReader(`[{"Node":"n","CheckID":"c","Status":"maintenance"}]`))
	if err != nil || len(got) != 1 || got[0].Status != beacon.HealthCritical {
		t.Errorf("decodeChecks(maintenance) = %+v, %v; want one critical check", got, err)
	}
}

func TestDecodeRealAgentServiceAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       beacon.Instance
	}{
		{"web", realAgentServiceAnswer, beacon.Instance{ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080,
			Tags: []string{"v1", "canary"}, Meta: map[string]string{"version": "1.2"}, Weights: beacon.Weights{Passing: 10, Warning: 1}}},
		{"escaped ID", realAgentServiceEscapedAnswer, beacon.Instance{ID: "db 1/é", Service: "db", Port: 5432,
			Tags: []string{}, Meta: map[string]string{}, Weights: beacon.Weights{Passing: 1, Warning: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAgentService(strings.NewReader(tc.body))
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decodeAgentService(%s) = %+v, %v; want %+v", tc.name, got, err, tc.want)
			}
		})
	}
	if got, err := decodeAgentService(strings.NewReader(`{"Service":"web"}`)); !errors.Is(err, beacon.ErrMalformedResponse) {
		t.Errorf("decodeAgentService(no ID) = %+v, %v; want ErrMalformedResponse", got, err)
	}
}

func TestDecodeRealServicesAnswer(t *testing.T) {
	got, meta, err := decodeServices(indexed("18"), strings.NewReader(realServicesAnswer))
	want := []CatalogService{{Name: "consul", Tags: []string{}}, {Name: "db", Tags: []string{}}, {Name: "web", Tags: []string{"canary", "v1"}}}
	if err != nil || !reflect.DeepEqual(got, want) || meta.LastIndex != 18 {
		t.Errorf("decodeServices(realServicesAnswer) = %+v, %+v, %v; want %+v at index 18", got, meta, err, want)
	}
	// null tags (not seen from Consul, but valid JSON) come out empty, not nil.
	got, _, err = decodeServices(indexed("1"), strings.NewReader(`{"b":null,"a":["z","y"]}`))
	want = []CatalogService{{Name: "a", Tags: []string{"y", "z"}}, {Name: "b", Tags: []string{}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("decodeServices(null tags) = %+v, %v; want %+v", got, err, want)
	}
}

func TestDecodeRealOperatorAnswers(t *testing.T) {
	if got, err := decodeLeader(strings.NewReader(realLeaderAnswer)); err != nil || got != "127.0.0.1:18580" {
		t.Errorf("decodeLeader(%s) = %q, %v; want 127.0.0.1:18580", realLeaderAnswer, got, err)
	}
	if got, err := decodeLeader(strings.NewReader(`""`)); err != nil || got != "" {
		t.Errorf(`decodeLeader("") = %q, %v; want "" (no leader)`, got, err)
	}
	wantSelf := AgentInfo{Node: "vm", Datacenter: "dc1", Version: "1.14.8", Server: true}
	if got, err := decodeSelf(strings.NewReader(realSelfAnswer)); err != nil || got != wantSelf {
		t.Errorf("decodeSelf(realSelfAnswer) = %+v, %v; want %+v", got, err, wantSelf)
	}
	wantTok := TokenInfo{AccessorID: "6a1253d2-1785-24fd-91c2-f8e78c745511", Description: "Agent token for node1",
		Policies: []string{"node1-write"}, Roles: []string{"web-role"}, ServiceIdentities: []string{"web"}, NodeIdentities: []string{"node1"}}
	got, err := decodeTokenSelf(strings.NewReader(realTokenSelfAnswer))
	if err != nil || !reflect.DeepEqual(got, wantTok) {
		t.Errorf("decodeTokenSelf(realTokenSelfAnswer) = %+v, %v; want %+v", got, err, wantTok)
	}
}

// failingReader hands out data, then a connection error.
type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestDecodeJSONErrors pins how decodeJSON sorts failures: a connection
// that breaks is worth retrying elsewhere, a bad or oversized answer is not.
func TestDecodeJSONErrors(t *testing.T) {
	capErr := &cappedBody{r: strings.NewReader(`["` + strings.Repeat("a", 100) + `"]`), c: io.NopCloser(nil), cancel: func() {}, limit: 10}
	for _, tc := range []struct {
		name string
		body io.Reader
		want error
	}{
		{"reset mid-value", &failingReader{data: `["a",`, err: errors.New("connection reset")}, beacon.ErrUnavailable},
		{"reset after value", &failingReader{data: `["a"] `, err: errors.New("connection reset")}, beacon.ErrUnavailable},
		{"size cap", capErr, errTooLarge},
		{"truncated", strings.NewReader(`["a",`), beacon.ErrMalformedResponse},
		{"trailing data", strings.NewReader(`["a"] ["b"]`), errTrailingData},
		{"wrong type", strings.NewReader(`{"a":1}`), beacon.ErrMalformedResponse},
		{"empty", strings.NewReader(``), beacon.ErrMalformedResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v []string
			err := decodeJSON(tc.body, &v)
			if !errors.Is(err, tc.want) {
				t.Errorf("decodeJSON(%s) = %v, want an error matching %v", tc.name, err, tc.want)
			}
			if tc.want != beacon.ErrUnavailable && !errors.Is(err, beacon.ErrMalformedResponse) {
				t.Errorf("decodeJSON(%s) = %v, want an error matching ErrMalformedResponse", tc.name, err)
			}
		})
	}
}

// nodeMetaHealthAnswer holds two instances on node a (zone a) and one on
// node b (zone b), each node with Consul's own consul-network-segment.
const nodeMetaHealthAnswer = `[
{"Node":{"Node":"a","Address":"127.0.0.1","Meta":{"consul-network-segment":"","zone":"a"}},"Service":{"ID":"s1","Service":"s","Port":1}},
{"Node":{"Node":"a","Address":"127.0.0.1","Meta":{"consul-network-segment":"","zone":"a"}},"Service":{"ID":"s2","Service":"s","Port":2}},
{"Node":{"Node":"b","Address":"127.0.0.2","Meta":{"consul-network-segment":"","zone":"b","rack":"7"}},"Service":{"ID":"s3","Service":"s","Port":3,"Meta":{"zone":"c"}}},
{"Node":{"Node":"c","Address":"127.0.0.3","Meta":{"consul-network-segment":""}},"Service":{"ID":"s4","Service":"s","Port":4}}
]`

func TestDecodeNodeMeta(t *testing.T) {
	insts, _, err := decodeHealth(indexed("7"), strings.NewReader(nodeMetaHealthAnswer))
	if err != nil || len(insts) != 4 {
		t.Fatalf("decodeHealth(nodeMetaHealthAnswer) = %+v, %v; want 4 instances", insts, err)
	}
	wantMeta := []map[string]string{{"zone": "a"}, {"zone": "a"}, {"zone": "b", "rack": "7"}, nil}
	wantZone := []string{"a", "a", "c", ""} // service meta wins over the node's
	for i, in := range insts {
		if !reflect.DeepEqual(in.NodeMeta, wantMeta[i]) {
			t.Errorf("decodeHealth(nodeMetaHealthAnswer)[%d].NodeMeta = %v, want %v", i, in.NodeMeta, wantMeta[i])
		}
		if z := in.Zone(""); z != wantZone[i] {
			t.Errorf("decodeHealth(nodeMetaHealthAnswer)[%d].Zone(\"\") = %q, want %q", i, z, wantZone[i])
		}
	}
	if reflect.ValueOf(insts[0].NodeMeta).UnsafePointer() != reflect.ValueOf(insts[1].NodeMeta).UnsafePointer() {
		t.Errorf("the two instances of node a carry two maps, want one shared")
	}
}

// BenchmarkDecodeHealthHeap reports the heap an answer of 1,000 instances
// on 50 nodes keeps once decoded (B/instance), with nodes without meta of
// an operator's (only Consul's consul-network-segment) and with nodes in
// three zones: what Instance.NodeMeta costs a watching cache.
func BenchmarkDecodeHealthHeap(b *testing.B) {
	for _, tc := range []struct {
		name string
		meta func(node int) string
	}{
		{"no-node-meta", func(int) string { return `{"consul-network-segment":""}` }},
		{"zones", func(n int) string { return `{"consul-network-segment":"","zone":"` + string(rune('a'+n%3)) + `"}` }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const insts, nodes = 1000, 50
			var sb strings.Builder
			sb.WriteString("[")
			for i := range insts {
				if i > 0 {
					sb.WriteString(",")
				}
				n := i % nodes
				fmt.Fprintf(&sb, `{"Node":{"Node":"node-%d","Address":"10.0.0.%d","Meta":%s},"Service":{"ID":"web-%d","Service":"web","Port":%d,"Meta":{"version":"1.2"}},"Checks":[{"CheckID":"serfHealth","Status":"passing"}]}`, n, n, tc.meta(n), i, 8000+i)
			}
			sb.WriteString("]")
			body := sb.String()
			var keep [][]beacon.Instance
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			for b.Loop() {
				got, _, err := decodeHealth(indexed("7"), strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				keep = append(keep, got)
			}
			runtime.GC()
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(ms1.HeapAlloc-ms0.HeapAlloc)/float64(len(keep)*insts), "B/instance")
			runtime.KeepAlive(keep)
		})
	}
}
