package beacon

import (
	"net"
	"strconv"
	"strings"
	"unique"
)

// ServiceAddress is an address, and optionally a port, that Consul keeps
// under a tag for a service.
type ServiceAddress struct {
	// Address is an IP address or a host name.
	Address string
	// Port is 0 when the tag names only an address: the instance's Port applies.
	Port int
}

// The tagged-address keys Consul itself uses. Registrations may use any
// other key too; Consul and Beacon give them no meaning.
const (
	TaggedLAN     = "lan"
	TaggedWAN     = "wan"
	TaggedLANIPv4 = "lan_ipv4"
	TaggedLANIPv6 = "lan_ipv6"
	TaggedWANIPv4 = "wan_ipv4"
	TaggedWANIPv6 = "wan_ipv6"
)

// Scope is the network a caller reaches an instance over: LAN from the
// instance's own datacenter, WAN from another one.
type Scope uint8

const (
	// LAN: the caller is in the instance's datacenter.
	LAN Scope = iota
	// WAN: the caller is in another datacenter.
	WAN
)

// String returns "lan" or "wan".
func (s Scope) String() string {
	if s == WAN {
		return TaggedWAN
	}
	return TaggedLAN
}

// AddressPolicy says which Scope a caller uses for the instances it picks.
// The zero value is Consul's own rule (translate_wan_addrs).
type AddressPolicy uint8

const (
	// AddressByDatacenter uses LAN addresses for instances in the caller's
	// datacenter and WAN addresses for instances in any other.
	AddressByDatacenter AddressPolicy = iota
	// AddressAlwaysLAN uses LAN addresses wherever an instance is: for
	// datacenters joined by a private network.
	AddressAlwaysLAN
	// AddressAlwaysWAN uses WAN addresses even in the caller's datacenter.
	AddressAlwaysWAN
)

// Scope returns the scope p gives an instance in another datacenter than
// the caller's (remote) or in the caller's own. An unknown policy acts as
// AddressByDatacenter.
func (p AddressPolicy) Scope(remote bool) Scope {
	switch {
	case p == AddressAlwaysLAN:
		return LAN
	case p == AddressAlwaysWAN, remote:
		return WAN
	}
	return LAN
}

// AddressFor returns where a caller on scope s reaches i: the first of
//
//  1. the service's tagged address <s>_ipv6, <s>_ipv4 or <s> ("wan_ipv6",
//     "wan_ipv4", "wan" for WAN), with its port, or Port when it has none;
//  2. the node's tagged address <s>_ipv6, <s>_ipv4 or <s>, with Port
//     (present only when the service registered no address of its own);
//  3. Address and Port.
//
// This is Consul's own rule for DNS answers and ?dc= reads with
// translate_wan_addrs (agent/translate_addr.go), with two differences:
// Consul takes a WAN port only from the "wan" entry, and for LAN ignores
// the bare "lan" entry. Consul fills in "wan_ipv4" (or "wan_ipv6") with
// the service's own address at registration, which its DNS then prefers
// to a "wan" set alone; those restating entries are left out of Instance
// (see CompactTaggedAddresses), so here a "wan" set alone is used.
func (i Instance) AddressFor(s Scope) (host string, port int) {
	v6, v4, bare := TaggedLANIPv6, TaggedLANIPv4, TaggedLAN
	if s == WAN {
		v6, v4, bare = TaggedWANIPv6, TaggedWANIPv4, TaggedWAN
	}
	if len(i.TaggedAddresses) > 0 {
		for _, k := range [...]string{v6, v4, bare} {
			if a := i.TaggedAddresses[k]; a.Address != "" {
				if a.Port != 0 {
					return a.Address, a.Port
				}
				return a.Address, i.Port
			}
		}
	}
	if len(i.NodeTaggedAddresses) > 0 {
		for _, k := range [...]string{v6, v4, bare} {
			if a := i.NodeTaggedAddresses[k]; a != "" {
				return a, i.Port
			}
		}
	}
	return i.Address, i.Port
}

// Translate returns i with Address and Port set to AddressFor(s), so that
// everything dialling Address and Port (balancers, httpclient,
// grpcresolver) reaches it over s. The copy shares i's tags, meta and
// tagged addresses; i is not modified.
func (i Instance) Translate(s Scope) Instance {
	i.Address, i.Port = i.AddressFor(s)
	return i
}

// HostPort returns Address and Port as one dialable "host:port", with an
// IPv6 address in brackets ("[::1]:8080").
func (i Instance) HostPort() string { return JoinHostPort(i.Address, i.Port) }

// JoinHostPort is net.JoinHostPort(host, strconv.Itoa(port)) in one
// allocation instead of two: an IPv6 host gets brackets.
func JoinHostPort(host string, port int) string {
	var b strings.Builder
	b.Grow(len(host) + 8)
	if strings.IndexByte(host, ':') >= 0 {
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	b.WriteByte(':')
	var digits [20]byte
	b.Write(strconv.AppendInt(digits[:0], int64(port), 10))
	return b.String()
}

// CompactTaggedAddresses returns the tagged addresses an Instance carries,
// given those Consul reports for it; backends call it when they decode an
// answer. address and port are the instance's (the node's address when
// the service has none of its own, own false).
//
// The service's entries equal to address and port are left out: Consul's
// agent adds lan_ipv4 and wan_ipv4 (or the _ipv6 pair) restating them to
// every service registered with an IP address. The node's are kept only
// when own is false, since only then is the node's address the instance's,
// less the entries equal to address (Consul sets its node's lan, lan_ipv4,
// wan and wan_ipv4 to it unless told otherwise). A map left empty is nil,
// so the common instance pays nothing for them; strings are interned, as
// they repeat across instances and answers. svc and node are not modified.
func CompactTaggedAddresses(address string, port int, own bool, svc map[string]ServiceAddress, node map[string]string) (map[string]ServiceAddress, map[string]string) {
	var outSvc map[string]ServiceAddress
	for k, v := range svc {
		if v.Address == address && (v.Port == port || v.Port == 0) || v.Address == "" {
			continue
		}
		if outSvc == nil {
			outSvc = make(map[string]ServiceAddress, len(svc))
		}
		outSvc[intern(k)] = ServiceAddress{Address: intern(v.Address), Port: v.Port}
	}
	if own {
		return outSvc, nil
	}
	var outNode map[string]string
	for k, v := range node {
		if v == address || v == "" {
			continue
		}
		if outNode == nil {
			outNode = make(map[string]string, len(node))
		}
		outNode[intern(k)] = intern(v)
	}
	return outSvc, outNode
}

func intern(s string) string { return unique.Make(s).Value() }

// Beacon's own bounds on a registration's tagged addresses (Consul sets
// none): they travel in every answer about the instance.
const (
	MaxTaggedAddresses     = 64
	MaxTaggedAddressKeyLen = 128
)

// validateTaggedAddresses accepts any key Consul does (non-empty text),
// an IP address or host name for each, of the right family for the four
// family keys (Consul refuses the others; it forgets to check wan_ipv6),
// and a port of 0–65535.
func validateTaggedAddresses(m map[string]ServiceAddress) error {
	if len(m) > MaxTaggedAddresses {
		return invalid("TaggedAddresses", "%d entries, more than %d", len(m), MaxTaggedAddresses)
	}
	for k, v := range m {
		field := "TaggedAddresses[" + strconv.Quote(k) + "]"
		switch {
		case k == "":
			return invalid("TaggedAddresses", "empty key")
		case len(k) > MaxTaggedAddressKeyLen:
			return invalid(field, "key of %d bytes, more than %d", len(k), MaxTaggedAddressKeyLen)
		case v.Address == "":
			return invalid(field+".Address", "empty")
		case v.Port < 0 || v.Port > 65535:
			return invalid(field+".Port", "%d is outside 0–65535", v.Port)
		}
		if err := validateText(field, k); err != nil {
			return err
		}
		if err := validateAddress(field+".Address", v.Address); err != nil {
			return err
		}
		var want4, want6 bool
		switch k {
		case TaggedLANIPv4, TaggedWANIPv4:
			want4 = true
		case TaggedLANIPv6, TaggedWANIPv6:
			want6 = true
		}
		if ip := net.ParseIP(v.Address); want4 && (ip == nil || ip.To4() == nil) {
			return invalid(field+".Address", "%q is not an IPv4 address", v.Address)
		} else if want6 && (ip == nil || ip.To4() != nil) {
			return invalid(field+".Address", "%q is not an IPv6 address", v.Address)
		}
	}
	return nil
}
