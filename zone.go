package beacon

import (
	"os"
	"strings"
)

// DefaultZoneKey is the meta key that names an instance's zone, in its
// service meta or its node's meta, unless configured otherwise.
const DefaultZoneKey = "zone"

// ZoneEnv is the environment variable that names the caller's own zone for
// programs that take one (cmd/sayhello -zone, beacon register -zone) and for
// ZoneFromEnv.
const ZoneEnv = "BEACON_ZONE"

// ZoneFromEnv returns $BEACON_ZONE: the caller's zone, or "" for none.
func ZoneFromEnv() string { return os.Getenv(ZoneEnv) }

// Zone returns the instance's zone: the value of key ("" means
// DefaultZoneKey) in its service meta when it is not empty, else in its
// node's meta, else "" (no zone). Service meta wins so that an instance can
// say where it runs when its node does not, or says otherwise.
func (i *Instance) Zone(key string) string {
	if key == "" {
		key = DefaultZoneKey
	}
	if z := i.Meta[key]; z != "" {
		return z
	}
	return i.NodeMeta[key]
}

// CompactNodeMeta returns a node's meta as Instance.NodeMeta carries it:
// without the keys Consul reserves for itself (prefix "consul-": every agent
// adds consul-network-segment), nil when nothing else is left. It returns m
// itself when it holds no reserved key, and never modifies m. Leaving Consul's
// own keys out keeps the common instance, on a node without meta of an
// operator's, at a nil map, as CompactTaggedAddresses does for addresses.
func CompactNodeMeta(m map[string]string) map[string]string {
	reserved := 0
	for k := range m {
		if strings.HasPrefix(k, reservedMetaPrefix) {
			reserved++
		}
	}
	switch {
	case reserved == len(m):
		return nil
	case reserved == 0:
		return m
	}
	out := make(map[string]string, len(m)-reserved)
	for k, v := range m {
		if !strings.HasPrefix(k, reservedMetaPrefix) {
			out[k] = v
		}
	}
	return out
}
