package beacon_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

// TestServicesQueryFilter: named services become one equality per name,
// joined by "or"; names a filter cannot carry, and too many names, are
// refused before anything is sent.
func TestServicesQueryFilter(t *testing.T) {
	if got := (beacon.ServicesQuery{}).Filter(); got != "" {
		t.Errorf("Filter() without services = %q, want empty", got)
	}
	q := beacon.ServicesQuery{Services: []string{"web", "api.v2"}}
	if err := q.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if got, want := q.Filter(), `Service.Service == "web" or Service.Service == "api.v2"`; got != want {
		t.Errorf("Filter() = %q, want %q", got, want)
	}
	many := make([]string, beacon.MaxSummaryServices+1)
	for i := range many {
		many[i] = "s"
	}
	for _, bad := range [][]string{{`a"b`}, {`a\b`}, {""}, {"a/b"}, many} {
		err := beacon.ServicesQuery{Services: bad}.Validate()
		var ve *beacon.ValidationError
		if !errors.As(err, &ve) || ve.Field != "Services" && ve.Field != "Service" {
			t.Errorf("Validate(Services %.40q) = %v, want a ValidationError on Services", bad, err)
		}
	}
}

// FuzzServicesQueryFilter: a name Validate accepts appears in the filter
// as exactly one string literal, so it cannot end the literal early and
// add terms of its own.
func FuzzServicesQueryFilter(f *testing.F) {
	for _, s := range []string{"web", `a"b`, `a\"`, "api.v2", "x or y", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		q := beacon.ServicesQuery{Services: []string{name}}
		if q.Validate() != nil {
			if beacon.FilterableServiceName(name) {
				t.Fatalf("Validate refused %q, which FilterableServiceName accepts", name)
			}
			return
		}
		got := q.Filter()
		if want := `Service.Service == "` + name + `"`; got != want || strings.Count(got, `"`) != 2 {
			t.Fatalf("Filter() = %q, want %q with two quotes", got, want)
		}
	})
}
