package beacon_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

const queryID = "979d3c25-8087-69d3-7720-09ac6d3a2855"

func validPreparedQuery() beacon.PreparedQuery {
	return beacon.PreparedQuery{
		Name: "web-failover", Service: "web", Tags: []string{"v1", "!canary"}, OnlyPassing: true, Near: "_agent",
		Failover: beacon.QueryFailover{NearestN: 2, Datacenters: []string{"dc2", "eu_west-1"}},
	}
}

func TestPreparedQueryValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*beacon.PreparedQuery)
		field  string // "" means valid
	}{
		{"valid", func(*beacon.PreparedQuery) {}, ""},
		{"with ID", func(q *beacon.PreparedQuery) { q.ID = queryID }, ""},
		{"with upper-case ID", func(q *beacon.PreparedQuery) { q.ID = strings.ToUpper(queryID) }, ""},
		{"minimal", func(q *beacon.PreparedQuery) { *q = beacon.PreparedQuery{Name: "q", Service: "web"} }, ""},
		{"name with dot and underscore", func(q *beacon.PreparedQuery) { q.Name = "api.v2_legacy" }, ""},
		{"name with reserved URL characters", func(q *beacon.PreparedQuery) { q.Name = "a?b#c%d e" }, ""},
		{"ID not a UUID", func(q *beacon.PreparedQuery) { q.ID = "web-failover" }, "ID"},
		{"ID too short", func(q *beacon.PreparedQuery) { q.ID = queryID[1:] }, "ID"},
		{"ID with a misplaced hyphen", func(q *beacon.PreparedQuery) { q.ID = "979d3c2-58087-69d3-7720-09ac6d3a2855" }, "ID"},
		{"empty name", func(q *beacon.PreparedQuery) { q.Name = "" }, "Name"},
		{"name shaped like an ID", func(q *beacon.PreparedQuery) { q.Name = queryID }, "Name"},
		{"name with slash", func(q *beacon.PreparedQuery) { q.Name = "a/execute" }, "Name"},
		{"name dot-dot", func(q *beacon.PreparedQuery) { q.Name = ".." }, "Name"},
		{"name with control character", func(q *beacon.PreparedQuery) { q.Name = "a\tb" }, "Name"},
		{"name not UTF-8", func(q *beacon.PreparedQuery) { q.Name = "\xff" }, "Name"},
		{"name too long", func(q *beacon.PreparedQuery) { q.Name = strings.Repeat("n", beacon.MaxQueryNameLen+1) }, "Name"},
		{"empty service", func(q *beacon.PreparedQuery) { q.Service = "" }, "Service"},
		{"service with slash", func(q *beacon.PreparedQuery) { q.Service = "a/b" }, "Service"},
		{"empty tag", func(q *beacon.PreparedQuery) { q.Tags = []string{"v1", ""} }, "Tags[1]"},
		{"bare exclusion", func(q *beacon.PreparedQuery) { q.Tags = []string{"!"} }, "Tags[0]"},
		{"tag with control character", func(q *beacon.PreparedQuery) { q.Tags = []string{"a\x00"} }, "Tags[0]"},
		{"near with newline", func(q *beacon.PreparedQuery) { q.Near = "node\n1" }, "Near"},
		{"negative NearestN", func(q *beacon.PreparedQuery) { q.Failover.NearestN = -1 }, "Failover.NearestN"},
		{"empty failover datacenter", func(q *beacon.PreparedQuery) { q.Failover.Datacenters = []string{"dc2", ""} }, "Failover.Datacenters[1]"},
		{"failover datacenter with space", func(q *beacon.PreparedQuery) { q.Failover.Datacenters = []string{"dc 2"} }, "Failover.Datacenters[0]"},
		{"failover datacenter too long", func(q *beacon.PreparedQuery) { q.Failover.Datacenters = []string{strings.Repeat("d", 64)} }, "Failover.Datacenters[0]"},
		{"failover datacenter twice", func(q *beacon.PreparedQuery) { q.Failover.Datacenters = []string{"dc2", "dc3", "dc2"} }, "Failover.Datacenters[2]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := validPreparedQuery()
			tc.mutate(&q)
			err := q.Validate()
			wantField(t, "PreparedQuery.Validate()", err, tc.field)
		})
	}
}

func TestValidateQueryRefAndOptions(t *testing.T) {
	for _, tc := range []struct {
		ref   string
		field string
	}{
		{queryID, ""},
		{"web-failover", ""},
		{"api.v2", ""},
		{"a?b", ""},
		{"", "Query"},
		{"a/b", "Query"},
		{".", "Query"},
		{"a\nb", "Query"},
	} {
		wantField(t, "ValidateQueryRef("+tc.ref+")", beacon.ValidateQueryRef(tc.ref), tc.field)
	}
	for _, tc := range []struct {
		opts  beacon.ExecuteOptions
		field string
	}{
		{beacon.ExecuteOptions{}, ""},
		{beacon.ExecuteOptions{Datacenter: "dc2", Near: "_agent", Limit: 3}, ""},
		{beacon.ExecuteOptions{Datacenter: "dc/2"}, "Datacenter"},
		{beacon.ExecuteOptions{Near: "\x7f"}, "Near"},
		{beacon.ExecuteOptions{Limit: -1}, "Limit"},
	} {
		wantField(t, "ExecuteOptions.Validate()", tc.opts.Validate(), tc.field)
	}
	wantField(t, `ValidateQueryID("")`, beacon.ValidateQueryID(""), "ID")
	wantField(t, "ValidateQueryID(name)", beacon.ValidateQueryID("web"), "ID")
	wantField(t, "ValidateQueryID(id)", beacon.ValidateQueryID(queryID), "")
}

// wantField checks that err is nil when field is "", and otherwise a
// *ValidationError for field matching ErrInvalid.
func wantField(t *testing.T, call string, err error, field string) {
	t.Helper()
	var ve *beacon.ValidationError
	switch {
	case field == "" && err != nil:
		t.Errorf("%s = %v, want nil", call, err)
	case field == "":
	case !errors.As(err, &ve) || !errors.Is(err, beacon.ErrInvalid):
		t.Errorf("%s = %v, want a *beacon.ValidationError for %s", call, err, field)
	case ve.Field != field:
		t.Errorf("%s = %v, want Field %q, got %q", call, err, field, ve.Field)
	}
}

// FuzzValidatePreparedQuery: every refusal is a *ValidationError naming a
// field; what passes holds each rule, travels in a URL path unchanged, and
// survives the JSON trip.
func FuzzValidatePreparedQuery(f *testing.F) {
	f.Add(queryID, "web-failover", "web", "!canary", "_agent", 2, "dc2", "dc3", 0)
	f.Add("", "", "", "", "", -1, "", "", -1)
	f.Add("x", queryID, "a/b", "!", "\x00", 0, "dc 2", "dc 2", 5)
	f.Add(strings.ToUpper(queryID), "a?b#c", "api.v2", "v1", "node-1", 1, "dc2", "dc2", 0)
	f.Fuzz(func(t *testing.T, id, name, svc, tag, near string, nearest int, dc1, dc2 string, limit int) {
		typed := func(what string, err error) {
			t.Helper()
			var ve *beacon.ValidationError
			if err != nil && (!errors.Is(err, beacon.ErrInvalid) || !errors.As(err, &ve) || ve.Field == "") {
				t.Fatalf("%s = %v, want a *ValidationError naming a field", what, err)
			}
		}
		q := beacon.PreparedQuery{ID: id, Name: name, Service: svc, Tags: []string{tag}, Near: near,
			Failover: beacon.QueryFailover{NearestN: nearest, Datacenters: []string{dc1, dc2}}}
		err := q.Validate()
		typed("PreparedQuery.Validate", err)
		if err == nil {
			if id != "" && !beacon.IsQueryID(id) || beacon.IsQueryID(name) || beacon.ValidateServiceName(svc) != nil ||
				tag == "" || tag == "!" || nearest < 0 || dc1 == "" || dc2 == "" || dc1 == dc2 ||
				beacon.ValidateDatacenter(dc1) != nil || beacon.ValidateDatacenter(dc2) != nil {
				t.Fatalf("%+v.Validate() = nil, but a part of it is invalid", q)
			}
			if p, err := url.PathUnescape(url.PathEscape(name)); err != nil || p != name || strings.Contains(name, "/") || name == "." || name == ".." {
				t.Fatalf("%+v.Validate() = nil, but its name does not survive a URL path", q)
			}
			b, err := json.Marshal(q)
			if err != nil {
				t.Fatalf("json.Marshal(%+v) = %v", q, err)
			}
			var back beacon.PreparedQuery
			if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, q) {
				t.Fatalf("PreparedQuery %+v came back from JSON as %+v (%v)", q, back, err)
			}
		}
		refErr := beacon.ValidateQueryRef(name)
		typed("ValidateQueryRef", refErr)
		if err == nil && refErr != nil {
			t.Fatalf("ValidateQueryRef(%q) = %v for the name of a valid query", name, refErr)
		}
		if idErr := beacon.ValidateQueryID(id); idErr != nil {
			typed("ValidateQueryID", idErr)
		} else if url.PathEscape(id) != id || beacon.ValidateQueryRef(id) != nil {
			t.Fatalf("ValidateQueryID(%q) = nil, but it is not a plain path segment", id)
		}
		opts := beacon.ExecuteOptions{Datacenter: dc1, Near: near, Limit: limit}
		optErr := opts.Validate()
		typed("ExecuteOptions.Validate", optErr)
		if optErr == nil && (limit < 0 || beacon.ValidateDatacenter(dc1) != nil) {
			t.Fatalf("%+v.Validate() = nil, want a valid datacenter and a limit ≥ 0", opts)
		}
	})
}
