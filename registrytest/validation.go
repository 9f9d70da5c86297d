package registrytest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// testValidation checks that invalid input is refused with a
// *beacon.ValidationError naming the offending field, before anything
// reaches the agent.
func (s suite) testValidation(t *testing.T) {
	t.Parallel()
	_, r := s.agent(t)
	ctx := testContext(t)

	// Each invalid registration is for a service of its own with an
	// otherwise valid name, so that afterwards a lookup can show that
	// nothing was registered.
	valid := func(service string) beacon.Registration {
		return beacon.Registration{ID: service + "-1", Service: service, Port: 9000}
	}
	registrations := []struct {
		name  string
		reg   beacon.Registration
		field string
	}{
		{"EmptyID", func() beacon.Registration { r := valid("inv-id"); r.ID = ""; return r }(), "ID"},
		{"ServiceWithControlCharacter", func() beacon.Registration { r := valid("inv-svc"); r.Service = "web\napi"; return r }(), "Service"},
		{"PortOutOfRange", func() beacon.Registration { r := valid("inv-port"); r.Port = 70000; return r }(), "Port"},
		{"ReservedMetaKey", func() beacon.Registration {
			r := valid("inv-meta")
			r.Meta = map[string]string{"consul-version": "1"}
			return r
		}(), `Meta["consul-version"]`},
		{"CheckOfTwoKinds", func() beacon.Registration {
			r := valid("inv-kinds")
			r.Checks = []beacon.Check{{TTL: time.Minute, HTTP: "http://127.0.0.1:1/"}}
			return r
		}(), "Checks[0]"},
		{"CheckIntervalMissing", func() beacon.Registration {
			r := valid("inv-interval")
			r.Checks = []beacon.Check{{TTL: time.Minute}, {HTTP: "http://127.0.0.1:1/"}}
			return r
		}(), "Checks[1].Interval"},
		{"TaggedAddressNotIPv4", func() beacon.Registration {
			r := valid("inv-tagged")
			r.TaggedAddresses = map[string]beacon.ServiceAddress{beacon.TaggedWANIPv4: {Address: "2001:db8::1"}}
			return r
		}(), `TaggedAddresses["wan_ipv4"].Address`},
		{"GRPCCheckWithoutInterval", func() beacon.Registration {
			r := valid("inv-grpc")
			r.Checks = []beacon.Check{{GRPC: "127.0.0.1:9090/svc"}}
			return r
		}(), "Checks[0].Interval"},
		{"AliasCheckWithInterval", func() beacon.Registration {
			r := valid("inv-alias")
			r.Checks = []beacon.Check{{AliasService: "db-1", Interval: time.Second}}
			return r
		}(), "Checks[0].Interval"},
		{"AliasOfItself", func() beacon.Registration {
			r := valid("inv-alias-self")
			r.Checks = []beacon.Check{{AliasService: r.ID}}
			return r
		}(), "Checks[0].AliasService"},
		{"H2PINGCheckURL", func() beacon.Registration {
			r := valid("inv-h2ping")
			r.Checks = []beacon.Check{{H2PING: "https://127.0.0.1:8443/", Interval: time.Second}}
			return r
		}(), "Checks[0].H2PING"},
		{"DeregisterCriticalAfterBelowMinute", func() beacon.Registration {
			r := valid("inv-dereg")
			r.Checks = []beacon.Check{{TTL: time.Minute, DeregisterCriticalAfter: 30 * time.Second}}
			return r
		}(), "Checks[0].DeregisterCriticalAfter"},
	}
	queries := []struct {
		name  string
		q     beacon.Query
		field string
	}{
		{"EmptyService", beacon.Query{}, "Service"},
		{"EmptyTag", beacon.Query{Service: "web", Tags: []string{"v1", ""}}, "Tags[1]"},
		{"UnknownConsistency", beacon.Query{Service: "web", Consistency: beacon.Consistency(7)}, "Consistency"},
		{"WaitTimeAboveMaximum", beacon.Query{Service: "web", WaitIndex: 1, WaitTime: 11 * time.Minute}, "WaitTime"},
		{"DatacenterWithSpace", beacon.Query{Service: "web", Datacenter: "dc 1"}, "Datacenter"},
	}
	updates := []struct {
		name    string
		checkID string
		status  beacon.Health
		output  string
		field   string
	}{
		{"EmptyCheckID", "", beacon.HealthPassing, "", "CheckID"},
		{"UnknownStatus", "service:web-1", beacon.Health("ok"), "", "Status"},
		{"OutputTooLong", "service:web-1", beacon.HealthPassing, strings.Repeat("x", beacon.MaxCheckOutput+1), "Output"},
	}

	for _, tc := range registrations {
		t.Run("Register/"+tc.name, func(t *testing.T) {
			wantInvalid(t, fmt.Sprintf("Register(%q)", tc.reg.ID), r.Register(ctx, tc.reg), tc.field)
		})
	}
	for _, tc := range queries {
		t.Run("Instances/"+tc.name, func(t *testing.T) {
			_, _, err := r.Instances(ctx, tc.q)
			wantInvalid(t, "Instances("+describe(tc.q)+")", err, tc.field)
		})
	}
	for _, tc := range updates {
		t.Run("UpdateTTL/"+tc.name, func(t *testing.T) {
			wantInvalid(t, fmt.Sprintf("UpdateTTL(%q, %q)", tc.checkID, tc.status), r.UpdateTTL(ctx, tc.checkID, tc.status, tc.output), tc.field)
		})
	}
	t.Run("Deregister/EmptyID", func(t *testing.T) {
		wantInvalid(t, `Deregister("")`, r.Deregister(ctx, ""), "ID")
	})

	t.Run("NothingRegistered", func(t *testing.T) {
		for _, tc := range registrations {
			if beacon.ValidateServiceName(tc.reg.Service) != nil {
				continue
			}
			q := beacon.Query{Service: tc.reg.Service, IncludeUnhealthy: true}
			if got, _ := lookup(t, ctx, r, q); len(got) != 0 {
				t.Errorf("Instances(%s) after an invalid Register = %+v, want none", describe(q), got)
			}
		}
	})
}

// wantInvalid checks that err is a *beacon.ValidationError for field that
// matches beacon.ErrInvalid.
func wantInvalid(t *testing.T, call string, err error, field string) {
	t.Helper()
	var ve *beacon.ValidationError
	switch {
	case !errors.As(err, &ve):
		t.Errorf("%s = %v, want a *beacon.ValidationError for %s", call, err, field)
	case ve.Field != field:
		t.Errorf("%s = %v, want a *beacon.ValidationError for %s (got Field %q)", call, err, field, ve.Field)
	case !errors.Is(err, beacon.ErrInvalid):
		t.Errorf("%s = %v, want an error matching beacon.ErrInvalid", call, err)
	}
}
