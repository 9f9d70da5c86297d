package consulhttp

import (
	"net/http"
	"strings"
	"testing"
)

// TestDecodeHealthMaintenance checks Instance.Maintenance: set by the
// instance's own maintenance check or its node's, not by another
// instance's.
func TestDecodeHealthMaintenance(t *testing.T) {
	entry := func(checks string) string {
		return `[{"Node":{"Node":"n1","Address":"127.0.0.1"},"Service":{"ID":"web-1","Service":"web","Port":80},"Checks":[` + checks + `]}]`
	}
	for _, tc := range []struct {
		name, checks string
		want         bool
	}{
		{"none", `{"CheckID":"service:web-1","Status":"passing"}`, false},
		{"own", `{"CheckID":"service:web-1","Status":"passing"},{"CheckID":"_service_maintenance:web-1","Status":"critical"}`, true},
		{"node", `{"CheckID":"_node_maintenance","Status":"critical"}`, true},
		{"other", `{"CheckID":"_service_maintenance:web-10","Status":"critical"}`, false},
	} {
		h := http.Header{}
		h.Set("X-Consul-Index", "1")
		insts, _, err := decodeHealth(h, strings.NewReader(entry(tc.checks)))
		if err != nil || len(insts) != 1 {
			t.Fatalf("decodeHealth(%s) = %v, %v, want one instance", tc.name, insts, err)
		}
		if insts[0].Maintenance != tc.want {
			t.Errorf("decodeHealth(%s)[0].Maintenance = %v, want %v", tc.name, insts[0].Maintenance, tc.want)
		}
	}
}
