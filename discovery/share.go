package discovery

import (
	"hash/maphash"
	"maps"
	"slices"
	"sync"

	"github.com/beaconsd/beacon"
)

// shared keeps one copy of equal meta maps and tag lists across every
// snapshot of a cache. Snapshots are immutable, and most instances of a
// fleet carry the same few metas (a deploy's version, a zone's node meta)
// and tags: a small Go map costs about 300 bytes, so one per instance, or
// even one per service, was most of a large cache's heap. Equal values are
// found by a seeded hash of their content and confirmed by comparing them,
// so a collision costs a missed share, never a wrong value.
//
// Memory: the tables index values that live snapshots hold anyway; they
// are bounded (sharedMax entries each) and start over when full, so a
// fleet whose every instance has distinct meta costs the index and no
// more. Safe for concurrent use.
type shared struct {
	mu    sync.Mutex
	seed  maphash.Seed
	metas map[uint64]map[string]string
	tags  map[uint64][]string
}

// sharedMax bounds each table.
const sharedMax = 4096

func newShared() *shared {
	return &shared{seed: maphash.MakeSeed(), metas: map[uint64]map[string]string{}, tags: map[uint64][]string{}}
}

// instances replaces the Meta, NodeMeta and Tags of insts, which the
// caller owns and is about to publish, with the shared copies of equal
// values. A nil s (a test's zero Cache) shares nothing.
func (s *shared) instances(insts []beacon.Instance) {
	if s == nil || len(insts) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Neighbours mostly carry equal values: comparing with the last one
	// shared costs less than hashing.
	var meta, nodeMeta map[string]string
	var tags []string
	for i := range insts {
		in := &insts[i]
		if len(in.Meta) > 0 && maps.Equal(in.Meta, meta) {
			in.Meta = meta
		} else if in.Meta = s.meta(in.Meta); len(in.Meta) > 0 {
			meta = in.Meta
		}
		if len(in.NodeMeta) > 0 && maps.Equal(in.NodeMeta, nodeMeta) {
			in.NodeMeta = nodeMeta
		} else if in.NodeMeta = s.meta(in.NodeMeta); len(in.NodeMeta) > 0 {
			nodeMeta = in.NodeMeta
		}
		if len(in.Tags) > 0 && slices.Equal(in.Tags, tags) {
			in.Tags = tags
		} else if in.Tags = s.tagList(in.Tags); len(in.Tags) > 0 {
			tags = in.Tags
		}
	}
}

// meta returns the shared map equal to m. Caller holds s.mu.
func (s *shared) meta(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m // nil and empty stay as they are
	}
	h := s.metaHash(m)
	if have, ok := s.metas[h]; ok {
		if maps.Equal(have, m) {
			return have
		}
		return m // a collision: not shared
	}
	if len(s.metas) >= sharedMax {
		clear(s.metas)
	}
	s.metas[h] = m
	return m
}

// tagList returns the shared list equal to tags. Caller holds s.mu.
func (s *shared) tagList(tags []string) []string {
	if len(tags) == 0 {
		return tags
	}
	h := s.tagsHash(tags)
	if have, ok := s.tags[h]; ok {
		if slices.Equal(have, tags) {
			return have
		}
		return tags
	}
	if len(s.tags) >= sharedMax {
		clear(s.tags)
	}
	// Capped at its length: a shared list is never appended to in place.
	tags = slices.Clip(tags)
	s.tags[h] = tags
	return tags
}

// metaHash hashes m's content, whatever the order its pairs are visited in.
func (s *shared) metaHash(m map[string]string) uint64 {
	h := uint64(len(m))
	for k, v := range m {
		h += maphash.String(s.seed, k) ^ maphash.String(s.seed, v)*0x9e3779b97f4a7c15
	}
	return h
}

func (s *shared) tagsHash(tags []string) uint64 {
	h := uint64(len(tags))
	for _, t := range tags {
		h = h*31 + maphash.String(s.seed, t)
	}
	return h
}
