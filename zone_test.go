package beacon_test

import (
	"maps"
	"testing"

	"github.com/beaconsd/beacon"
)

func TestInstanceZone(t *testing.T) {
	for _, tt := range []struct {
		name       string
		meta, node map[string]string
		key, want  string
	}{
		{"none", nil, nil, "", ""},
		{"node", nil, map[string]string{"zone": "a"}, "", "a"},
		{"service wins", map[string]string{"zone": "b"}, map[string]string{"zone": "a"}, "", "b"},
		{"empty service value falls back", map[string]string{"zone": ""}, map[string]string{"zone": "a"}, "", "a"},
		{"other key", map[string]string{"zone": "b"}, map[string]string{"az": "a"}, "az", "a"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := beacon.Instance{Meta: tt.meta, NodeMeta: tt.node}
			if got := in.Zone(tt.key); got != tt.want {
				t.Errorf("Zone(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestCompactNodeMeta(t *testing.T) {
	for _, tt := range []struct {
		in, want map[string]string
	}{
		{nil, nil},
		{map[string]string{}, nil},
		{map[string]string{"consul-network-segment": ""}, nil},
		{map[string]string{"consul-network-segment": "", "zone": "a"}, map[string]string{"zone": "a"}},
		{map[string]string{"zone": "a"}, map[string]string{"zone": "a"}},
	} {
		before := maps.Clone(tt.in)
		got := beacon.CompactNodeMeta(tt.in)
		if !maps.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("CompactNodeMeta(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !maps.Equal(tt.in, before) {
			t.Errorf("CompactNodeMeta modified its argument: %v, was %v", tt.in, before)
		}
	}
}

func TestCloneCopiesNodeMeta(t *testing.T) {
	in := beacon.Instance{NodeMeta: map[string]string{"zone": "a"}}
	c := in.Clone()
	c.NodeMeta["zone"] = "b"
	if in.NodeMeta["zone"] != "a" {
		t.Errorf("changing a Clone's NodeMeta changed the original: %v", in.NodeMeta)
	}
}
