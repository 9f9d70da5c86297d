package discovery

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/beaconsd/beacon"
)

// same reports whether a and b are one map, not two equal ones.
func same(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// TestSharedMetaAndTags: equal metas, node metas and tag lists share one
// copy across calls (as across snapshots and watches); different ones
// stay apart and unchanged; nil and empty stay as they are.
func TestSharedMetaAndTags(t *testing.T) {
	s := newShared()
	mk := func(version string) beacon.Instance {
		return beacon.Instance{ID: version,
			Meta:     map[string]string{"version": version, "zone": "a"},
			NodeMeta: map[string]string{"rack": "r1"},
			Tags:     []string{"blue", version}}
	}
	first := []beacon.Instance{mk("1"), mk("1"), mk("2")}
	s.instances(first)
	later := []beacon.Instance{mk("2"), mk("1"), {ID: "bare", Meta: map[string]string{}}}
	s.instances(later)

	if !same(first[0].Meta, first[1].Meta) || !same(first[0].Meta, later[1].Meta) {
		t.Error("equal metas are not one map")
	}
	if !same(first[2].Meta, later[0].Meta) {
		t.Error("equal metas of two calls are not one map")
	}
	if same(first[0].Meta, first[2].Meta) {
		t.Error("different metas share a map")
	}
	if !same(first[0].NodeMeta, later[0].NodeMeta) {
		t.Error("equal node metas are not one map")
	}
	if &first[0].Tags[0] != &later[1].Tags[0] || &first[0].Tags[0] == &first[2].Tags[0] {
		t.Error("tag lists not shared as they should be")
	}
	for _, in := range append(first, later[:2]...) {
		want := mk(in.ID)
		if !maps.Equal(in.Meta, want.Meta) || !maps.Equal(in.NodeMeta, want.NodeMeta) || !slices.Equal(in.Tags, want.Tags) {
			t.Errorf("instance %s = %+v, want %+v", in.ID, in, want)
		}
	}
	if bare := later[2]; bare.Meta == nil || len(bare.Meta) != 0 || bare.NodeMeta != nil || bare.Tags != nil {
		t.Errorf("empty meta, nil node meta and nil tags became %#v, %#v, %#v", bare.Meta, bare.NodeMeta, bare.Tags)
	}
	if got := cap(first[0].Tags); got != len(first[0].Tags) {
		t.Errorf("a shared tag list has room to grow (cap %d, len %d): an append would write into it", got, len(first[0].Tags))
	}
}

// TestSharedCollision: a value whose hash is taken by a different one is
// not shared, and not replaced by the other.
func TestSharedCollision(t *testing.T) {
	s := newShared()
	m := map[string]string{"k": "v"}
	other := map[string]string{"k": "w"}
	s.metas[s.metaHash(m)] = other // as if other hashed like m
	in := []beacon.Instance{{Meta: m}}
	s.instances(in)
	if !same(in[0].Meta, m) || in[0].Meta["k"] != "v" {
		t.Errorf("meta %v became %v on a collision", m, in[0].Meta)
	}
	tags := []string{"a"}
	s.tags[s.tagsHash(tags)] = []string{"b"}
	in = []beacon.Instance{{Tags: tags}}
	s.instances(in)
	if !slices.Equal(in[0].Tags, []string{"a"}) {
		t.Errorf("tags [a] became %v on a collision", in[0].Tags)
	}
}

// TestSharedBounded: distinct values never grow the tables past sharedMax.
func TestSharedBounded(t *testing.T) {
	s := newShared()
	for i := range sharedMax + 10 {
		v := fmt.Sprint(i)
		s.instances([]beacon.Instance{{Meta: map[string]string{"id": v}, Tags: []string{v}}})
	}
	if len(s.metas) > sharedMax || len(s.tags) > sharedMax {
		t.Errorf("tables hold %d metas and %d tag lists, want at most %d each", len(s.metas), len(s.tags), sharedMax)
	}
}

// BenchmarkSharedInstances: what sharing costs a publish of a large
// service (2,000 instances of equal meta, as BenchmarkLargeService's).
func BenchmarkSharedInstances(b *testing.B) {
	s := newShared()
	insts := make([]beacon.Instance, 2000)
	for i := range insts {
		insts[i] = beacon.Instance{Meta: map[string]string{"a": "1", "b": "2", "c": "3"}, NodeMeta: map[string]string{"zone": "z"}, Tags: []string{"x", "y"}}
	}
	b.ReportAllocs()
	for b.Loop() {
		s.instances(insts)
	}
}
