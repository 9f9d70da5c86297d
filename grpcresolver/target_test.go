package grpcresolver

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
	"google.golang.org/grpc/resolver"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		target  string
		service string
		tags    []string
	}{
		{"consul:///hello", "hello", nil},
		{"consul://ignored/hello", "hello", nil},
		{"consul://a.b:8500/hello?tag=v2", "hello", []string{"v2"}},
		{"consul:///hello?tag=a&tag=b", "hello", []string{"a", "b"}},
		{"consul:hello?tag=a", "hello", []string{"a"}},
		// Names Consul accepts though DNS cannot serve them (issue 11, B1).
		{"consul:///legacy_svc", "legacy_svc", nil},
		{"consul:///api.v2?tag=a", "api.v2", []string{"a"}},
		{"consul:///-greeter", "-greeter", nil},
	} {
		t.Run(tc.target, func(t *testing.T) {
			u, err := url.Parse(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			q, err := parseTarget(resolver.Target{URL: *u})
			if err != nil {
				t.Fatalf("parseTarget(%q) = %v", tc.target, err)
			}
			if q.Service != tc.service || !slices.Equal(q.Tags, tc.tags) {
				t.Errorf("parseTarget(%q) = service %q tags %q, want %q %q", tc.target, q.Service, q.Tags, tc.service, tc.tags)
			}
		})
	}
}

// FuzzParseTarget: a dial target either names a valid query, holding the
// service and exactly the tags written, or fails with beacon.ErrInvalid.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"consul:///hello", "consul://a.b:8500/hello?tag=v2", "consul:///hello?tag=a&tag=b", "consul:hello?tag=a",
		"consul:///", "consul:///hello?tag=", "consul:///hello?tg=a", "consul:///hello?tag=%zz", "consul:///a/b",
		"consul:///hello?tag=a;b", "consul:///he%6Clo", "consul:///hello?tag=%00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.Parse(target)
		if err != nil {
			return // gRPC refuses it before any resolver sees it
		}
		q, err := parseTarget(resolver.Target{URL: *u})
		if err != nil {
			if !errors.Is(err, beacon.ErrInvalid) {
				t.Fatalf("parseTarget(%q) = %v, want an error matching beacon.ErrInvalid", target, err)
			}
			return
		}
		if err := q.Validate(); err != nil {
			t.Fatalf("parseTarget(%q) = %+v, which does not validate: %v", target, q, err)
		}
		params, _ := url.ParseQuery(u.RawQuery)
		if len(params) > 1 || !slices.Equal(q.Tags, params["tag"]) || q.Service != (resolver.Target{URL: *u}).Endpoint() {
			t.Fatalf("parseTarget(%q) = %+v, want the endpoint and exactly the tags written (%v)", target, q, params)
		}
	})
}

func TestParseTargetErrors(t *testing.T) {
	for _, target := range []string{
		"consul:///", "consul:///hello?tag=", "consul:///hello?tg=a", "consul:///hello?tag=%zz",
		"consul:///a/b", "consul:///hello?tag=a;b", "consul:///hello?tag=%00", "consul:///" + strings.Repeat("a", 513),
	} {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		if q, err := parseTarget(resolver.Target{URL: *u}); !errors.Is(err, beacon.ErrInvalid) {
			t.Errorf("parseTarget(%q) = %+v, %v; want an error matching beacon.ErrInvalid", target, q, err)
		}
	}
}
