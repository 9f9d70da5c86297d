package grpcresolver

import (
	"net/url"
	"slices"
	"testing"

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
