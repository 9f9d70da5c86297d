package consulhttp

import (
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

// taggedHealthAnswer is two entries as Consul 1.14.8 reports them: one
// registered with an address and a wan tagged address of its own (Consul
// added lan_ipv4 and wan_ipv4), one without an address, on an external
// node advertising another WAN address.
const taggedHealthAnswer = `[` +
	`{"Node":{"Node":"vm","Address":"127.0.0.1","TaggedAddresses":{"lan":"127.0.0.1","lan_ipv4":"127.0.0.1","wan":"127.0.0.1","wan_ipv4":"127.0.0.1"}},` +
	`"Service":{"ID":"web-1","Service":"web","Address":"10.0.0.5","Port":8080,` +
	`"TaggedAddresses":{"lan_ipv4":{"Address":"10.0.0.5","Port":8080},"wan":{"Address":"198.51.100.7","Port":443},"wan_ipv4":{"Address":"10.0.0.5","Port":8080}}},"Checks":[]},` +
	`{"Node":{"Node":"ext","Address":"127.0.0.9","TaggedAddresses":{"lan":"127.0.0.9","wan":"203.0.113.9"}},` +
	`"Service":{"ID":"web-2","Service":"web","Address":"","Port":9000,"TaggedAddresses":null},"Checks":[]}]`

func TestDecodeHealthTaggedAddresses(t *testing.T) {
	h := http.Header{}
	h.Set("X-Consul-Index", "9")
	insts, _, err := decodeHealth(h, strings.NewReader(taggedHealthAnswer))
	if err != nil || len(insts) != 2 {
		t.Fatalf("decodeHealth(taggedHealthAnswer) = %+v, %v; want 2 instances", insts, err)
	}
	wantSvc := map[string]beacon.ServiceAddress{"wan": {Address: "198.51.100.7", Port: 443}}
	if in := insts[0]; !maps.Equal(in.TaggedAddresses, wantSvc) || in.NodeTaggedAddresses != nil {
		t.Errorf("web-1 tagged addresses = %v, node %v; want %v, nil", in.TaggedAddresses, in.NodeTaggedAddresses, wantSvc)
	}
	wantNode := map[string]string{"wan": "203.0.113.9"}
	if in := insts[1]; in.Address != "127.0.0.9" || in.TaggedAddresses != nil || !maps.Equal(in.NodeTaggedAddresses, wantNode) {
		t.Errorf("web-2 = %+v; want address 127.0.0.9, no service tagged addresses, node's %v", in, wantNode)
	}
	for _, tt := range []struct {
		i     int
		scope beacon.Scope
		want  string
	}{{0, beacon.LAN, "10.0.0.5:8080"}, {0, beacon.WAN, "198.51.100.7:443"}, {1, beacon.LAN, "127.0.0.9:9000"}, {1, beacon.WAN, "203.0.113.9:9000"}} {
		if got := insts[tt.i].Translate(tt.scope).HostPort(); got != tt.want {
			t.Errorf("%s.Translate(%v).HostPort() = %q, want %q", insts[tt.i].ID, tt.scope, got, tt.want)
		}
	}

	// The real answer of answers_test.go: Consul's defaults only.
	insts, _, err = decodeHealth(h, strings.NewReader(realHealthAnswer))
	if err != nil || len(insts) != 1 || insts[0].TaggedAddresses != nil || insts[0].NodeTaggedAddresses != nil {
		t.Errorf("decodeHealth(realHealthAnswer) = %+v, %v; want one instance without tagged addresses (all restate its address)", insts, err)
	}
}

func TestDecodeAgentServiceTaggedAddresses(t *testing.T) {
	in, err := decodeAgentService(strings.NewReader(realAgentServiceAnswer))
	if err != nil || in.TaggedAddresses != nil {
		t.Errorf("decodeAgentService(realAgentServiceAnswer) = %+v, %v; want no tagged addresses (Consul's defaults restate its address)", in, err)
	}
	const body = `{"ID":"web-1","Service":"web","Address":"::1","Port":8080,"TaggedAddresses":{"lan_ipv6":{"Address":"::1","Port":8080},"wan":{"Address":"2001:db8::7","Port":0}}}`
	in, err = decodeAgentService(strings.NewReader(body))
	want := map[string]beacon.ServiceAddress{"wan": {Address: "2001:db8::7"}}
	if err != nil || !maps.Equal(in.TaggedAddresses, want) {
		t.Errorf("decodeAgentService(%s) = %+v, %v; want TaggedAddresses %v", body, in, err, want)
	}
}
