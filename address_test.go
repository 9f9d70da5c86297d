package beacon_test

import (
	"encoding/json"
	"errors"
	"maps"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

func TestAddressFor(t *testing.T) {
	type sa = beacon.ServiceAddress
	base := beacon.Instance{ID: "web-1", Address: "10.0.0.5", Port: 8080}
	tests := []struct {
		name     string
		svc      map[string]sa
		node     map[string]string
		lan, wan string // host:port chosen for each scope
	}{
		{name: "no tagged addresses", lan: "10.0.0.5:8080", wan: "10.0.0.5:8080"},
		{name: "service wan with its port", svc: map[string]sa{"wan": {"198.51.100.7", 443}}, lan: "10.0.0.5:8080", wan: "198.51.100.7:443"},
		{name: "service wan without port", svc: map[string]sa{"wan": {"198.51.100.7", 0}}, lan: "10.0.0.5:8080", wan: "198.51.100.7:8080"},
		{name: "service lan", svc: map[string]sa{"lan": {"10.9.9.9", 9000}}, lan: "10.9.9.9:9000", wan: "10.0.0.5:8080"},
		{name: "family keys before the bare one, ipv6 first", svc: map[string]sa{
			"wan": {"198.51.100.7", 0}, "wan_ipv4": {"198.51.100.8", 0}, "wan_ipv6": {"2001:db8::8", 0},
			"lan_ipv4": {"10.1.1.1", 0},
		}, lan: "10.1.1.1:8080", wan: "[2001:db8::8]:8080"},
		{name: "node wan", node: map[string]string{"wan": "203.0.113.1"}, lan: "10.0.0.5:8080", wan: "203.0.113.1:8080"},
		{name: "node wan_ipv4 before node wan", node: map[string]string{"wan": "203.0.113.1", "wan_ipv4": "203.0.113.2"}, lan: "10.0.0.5:8080", wan: "203.0.113.2:8080"},
		{name: "service wan before node wan", svc: map[string]sa{"wan": {"198.51.100.7", 0}}, node: map[string]string{"wan": "203.0.113.1"},
			lan: "10.0.0.5:8080", wan: "198.51.100.7:8080"},
		{name: "other keys mean nothing", svc: map[string]sa{"public": {"web.example.com", 1}}, lan: "10.0.0.5:8080", wan: "10.0.0.5:8080"},
		{name: "empty entries are skipped", svc: map[string]sa{"wan": {"", 1}}, node: map[string]string{"wan": ""}, lan: "10.0.0.5:8080", wan: "10.0.0.5:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			in.TaggedAddresses, in.NodeTaggedAddresses = tt.svc, tt.node
			for scope, want := range map[beacon.Scope]string{beacon.LAN: tt.lan, beacon.WAN: tt.wan} {
				h, p := in.AddressFor(scope)
				if got := net.JoinHostPort(h, strconv.Itoa(p)); got != want {
					t.Errorf("AddressFor(%v) = %q, %d; want %s", scope, h, p, want)
				}
				tr := in.Translate(scope)
				if got := tr.HostPort(); got != want {
					t.Errorf("Translate(%v).HostPort() = %q, want %q", scope, got, want)
				}
				if tr.ID != in.ID || in.Address != base.Address || in.Port != base.Port {
					t.Errorf("Translate(%v) = %+v, modified its receiver or lost fields", scope, tr)
				}
			}
		})
	}
}

func TestAddressPolicyScope(t *testing.T) {
	for _, tt := range []struct {
		p      beacon.AddressPolicy
		remote bool
		want   beacon.Scope
	}{
		{beacon.AddressByDatacenter, false, beacon.LAN},
		{beacon.AddressByDatacenter, true, beacon.WAN},
		{beacon.AddressAlwaysLAN, true, beacon.LAN},
		{beacon.AddressAlwaysLAN, false, beacon.LAN},
		{beacon.AddressAlwaysWAN, false, beacon.WAN},
		{beacon.AddressAlwaysWAN, true, beacon.WAN},
		{beacon.AddressPolicy(9), true, beacon.WAN},
		{beacon.AddressPolicy(9), false, beacon.LAN},
	} {
		if got := tt.p.Scope(tt.remote); got != tt.want {
			t.Errorf("AddressPolicy(%d).Scope(%v) = %v, want %v", tt.p, tt.remote, got, tt.want)
		}
	}
	if beacon.LAN.String() != "lan" || beacon.WAN.String() != "wan" {
		t.Errorf("Scope strings = %q, %q; want lan, wan", beacon.LAN, beacon.WAN)
	}
}

func TestJoinHostPort(t *testing.T) {
	for _, tt := range []struct {
		host string
		port int
	}{{"127.0.0.1", 80}, {"::1", 8500}, {"fe80::1%lo", 0}, {"web.example", 65535}, {"", 1}} {
		if got, want := beacon.JoinHostPort(tt.host, tt.port), net.JoinHostPort(tt.host, strconv.Itoa(tt.port)); got != want {
			t.Errorf("JoinHostPort(%q, %d) = %q, want %q", tt.host, tt.port, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = beacon.JoinHostPort("127.0.0.1", 8500) }); n != 1 {
		t.Errorf("JoinHostPort allocates %v times, want 1", n)
	}
}

func TestCompactTaggedAddresses(t *testing.T) {
	type sa = beacon.ServiceAddress
	// What Consul's agent reports for a service registered at
	// 10.0.0.5:8080 with a wan address, on a node at 10.0.0.1 that
	// advertises 203.0.113.1 on the WAN.
	svc := map[string]sa{"lan_ipv4": {"10.0.0.5", 8080}, "wan_ipv4": {"10.0.0.5", 8080}, "wan": {"198.51.100.7", 443}, "lan": {"10.0.0.5", 0}}
	node := map[string]string{"lan": "10.0.0.1", "lan_ipv4": "10.0.0.1", "wan": "203.0.113.1", "wan_ipv4": "203.0.113.1"}
	svcBefore, nodeBefore := maps.Clone(svc), maps.Clone(node)

	gotSvc, gotNode := beacon.CompactTaggedAddresses("10.0.0.5", 8080, true, svc, node)
	if want := map[string]sa{"wan": {"198.51.100.7", 443}}; !maps.Equal(gotSvc, want) || gotNode != nil {
		t.Errorf("CompactTaggedAddresses(own address) = %v, %v; want %v, nil (the node's say nothing about the service's own address)", gotSvc, gotNode, want)
	}
	// The service without an address of its own: Address is the node's.
	gotSvc, gotNode = beacon.CompactTaggedAddresses("10.0.0.1", 8080, false, nil, node)
	if want := map[string]string{"wan": "203.0.113.1", "wan_ipv4": "203.0.113.1"}; gotSvc != nil || !maps.Equal(gotNode, want) {
		t.Errorf("CompactTaggedAddresses(node's address) = %v, %v; want nil, %v", gotSvc, gotNode, want)
	}
	// A node with Consul's defaults only: nothing to carry.
	gotSvc, gotNode = beacon.CompactTaggedAddresses("10.0.0.1", 8080, false,
		map[string]sa{}, map[string]string{"lan": "10.0.0.1", "lan_ipv4": "10.0.0.1", "wan": "10.0.0.1", "wan_ipv4": "10.0.0.1"})
	if gotSvc != nil || gotNode != nil {
		t.Errorf("CompactTaggedAddresses(defaults only) = %#v, %#v; want nil, nil", gotSvc, gotNode)
	}
	if !maps.Equal(svc, svcBefore) || !maps.Equal(node, nodeBefore) {
		t.Error("CompactTaggedAddresses modified the maps it was given")
	}
}

func TestCloneCopiesTaggedAddresses(t *testing.T) {
	in := beacon.Instance{
		ID:                  "a",
		TaggedAddresses:     map[string]beacon.ServiceAddress{"wan": {"198.51.100.7", 443}},
		NodeTaggedAddresses: map[string]string{"wan": "203.0.113.1"},
	}
	c := in.Clone()
	c.TaggedAddresses["wan"] = beacon.ServiceAddress{Address: "x"}
	c.NodeTaggedAddresses["wan"] = "x"
	if in.TaggedAddresses["wan"].Address != "198.51.100.7" || in.NodeTaggedAddresses["wan"] != "203.0.113.1" {
		t.Errorf("changing a Clone's tagged addresses changed the original: %+v", in)
	}
	if c := (beacon.Instance{}).Clone(); c.TaggedAddresses != nil || c.NodeTaggedAddresses != nil {
		t.Errorf("Clone of an instance without tagged addresses = %+v, want nil maps", c)
	}
}

func TestValidateTaggedAddresses(t *testing.T) {
	type sa = beacon.ServiceAddress
	tests := []struct {
		name  string
		m     map[string]sa
		field string // "" means valid
	}{
		{"none", nil, ""},
		{"wan with port", map[string]sa{"wan": {"198.51.100.7", 443}}, ""},
		{"any key, host name", map[string]sa{"public endpoint": {"web.example.com", 0}}, ""},
		{"ipv6 in lan_ipv6", map[string]sa{"lan_ipv6": {"::1", 0}}, ""},
		{"ipv6 in wan", map[string]sa{"wan": {"2001:db8::1", 0}}, ""},
		{"empty key", map[string]sa{"": {"10.0.0.1", 0}}, "TaggedAddresses"},
		{"key with control character", map[string]sa{"a\nb": {"10.0.0.1", 0}}, `TaggedAddresses["a\nb"]`},
		{"key too long", map[string]sa{strings.Repeat("k", beacon.MaxTaggedAddressKeyLen+1): {"10.0.0.1", 0}},
			`TaggedAddresses["` + strings.Repeat("k", beacon.MaxTaggedAddressKeyLen+1) + `"]`},
		{"empty address", map[string]sa{"wan": {"", 80}}, `TaggedAddresses["wan"].Address`},
		{"url as address", map[string]sa{"wan": {"http://x", 80}}, `TaggedAddresses["wan"].Address`},
		{"port negative", map[string]sa{"wan": {"10.0.0.1", -1}}, `TaggedAddresses["wan"].Port`},
		{"port too big", map[string]sa{"wan": {"10.0.0.1", 65536}}, `TaggedAddresses["wan"].Port`},
		{"ipv6 in wan_ipv4", map[string]sa{"wan_ipv4": {"2001:db8::1", 0}}, `TaggedAddresses["wan_ipv4"].Address`},
		{"host name in lan_ipv4", map[string]sa{"lan_ipv4": {"web.example.com", 0}}, `TaggedAddresses["lan_ipv4"].Address`},
		{"ipv4 in wan_ipv6", map[string]sa{"wan_ipv6": {"10.0.0.1", 0}}, `TaggedAddresses["wan_ipv6"].Address`},
		{"too many", func() map[string]sa {
			m := map[string]sa{}
			for i := range beacon.MaxTaggedAddresses + 1 {
				m["k"+strconv.Itoa(i)] = sa{"10.0.0.1", 0}
			}
			return m
		}(), "TaggedAddresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRegistration()
			r.TaggedAddresses = tt.m
			err := r.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *beacon.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field || !errors.Is(err, beacon.ErrInvalid) {
				t.Fatalf("Validate() = %v, want a *ValidationError for %s", err, tt.field)
			}
		})
	}
}

// FuzzValidateTaggedAddresses: a tagged address is refused with a
// ValidationError, or is one Consul takes (an IP address of the key's
// family, or a host name, and a port) and survives the JSON trip.
func FuzzValidateTaggedAddresses(f *testing.F) {
	f.Add("wan", "198.51.100.7", 443)
	f.Add("lan_ipv6", "::1", 0)
	f.Add("wan_ipv4", "::ffff:10.0.0.1", 1)
	f.Add("", "", -1)
	f.Add("x\x00", "web.example.com.", 65536)
	f.Fuzz(func(t *testing.T, key, addr string, port int) {
		r := validRegistration()
		r.TaggedAddresses = map[string]beacon.ServiceAddress{key: {Address: addr, Port: port}}
		err := r.Validate()
		if err != nil {
			var ve *beacon.ValidationError
			if !errors.Is(err, beacon.ErrInvalid) || !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "TaggedAddresses") {
				t.Fatalf("Validate() = %v, want a *ValidationError naming TaggedAddresses", err)
			}
			return
		}
		ip := net.ParseIP(addr)
		switch {
		case key == "" || addr == "" || port < 0 || port > 65535:
			t.Fatalf("Validate(%q: %q:%d) = nil, want an error", key, addr, port)
		case strings.HasSuffix(key, "_ipv4") && (key == beacon.TaggedLANIPv4 || key == beacon.TaggedWANIPv4) && (ip == nil || ip.To4() == nil):
			t.Fatalf("Validate(%q: %q) = nil, want an IPv4 address refused otherwise", key, addr)
		case (key == beacon.TaggedLANIPv6 || key == beacon.TaggedWANIPv6) && (ip == nil || ip.To4() != nil):
			t.Fatalf("Validate(%q: %q) = nil, want an IPv6 address refused otherwise", key, addr)
		}
		b, err := json.Marshal(r.TaggedAddresses)
		if err != nil {
			t.Fatalf("json.Marshal(%v) = %v", r.TaggedAddresses, err)
		}
		var back map[string]beacon.ServiceAddress
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, r.TaggedAddresses) {
			t.Fatalf("TaggedAddresses %v came back from JSON as %v (%v)", r.TaggedAddresses, back, err)
		}
		in := beacon.Instance{Address: "10.0.0.5", Port: 8080, TaggedAddresses: r.TaggedAddresses}
		for _, s := range []beacon.Scope{beacon.LAN, beacon.WAN} {
			if h, p := in.AddressFor(s); h == "" || p < 0 || p > 65535 {
				t.Fatalf("AddressFor(%v) = %q, %d from valid tagged addresses %v", s, h, p, r.TaggedAddresses)
			}
		}
	})
}
