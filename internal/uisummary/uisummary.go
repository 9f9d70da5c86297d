// Package uisummary decodes Consul's service summaries (GET
// /v1/internal/ui/services) into beacon.ServiceSummary, for every backend
// that serves beacon.ServiceSummaries. It keeps only what a summary holds:
// each service's name, counts and a digest of its nodes and tags; the
// node names themselves, thousands in a large datacenter, are hashed as
// they are read and never kept.
package uisummary

import (
	"encoding/json"
	"errors"
	"fmt"
	"unique"

	"github.com/beaconsd/beacon"
)

// entry is one element of the answer, reused from one to the next: the raw
// arrays keep their capacity, so the node lists cost no allocation each.
type entry struct {
	Name                                         string
	Nodes, Tags                                  json.RawMessage
	InstanceCount                                int
	ChecksPassing, ChecksWarning, ChecksCritical int
}

// ErrShape is an answer that is JSON but not a list of summaries.
var ErrShape = errors.New("not a list of service summaries")

// Decode reads a JSON array of service summaries from dec, one element at
// a time. Errors are json's (syntax, types), r's, or wrap ErrShape; the
// caller tells a transport failure from a malformed answer. Data after the
// array is the caller's to check (dec.Buffered()).
func Decode(dec *json.Decoder) ([]beacon.ServiceSummary, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil // null: no services
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("%w: the answer is %v, not an array", ErrShape, tok)
	}
	var out []beacon.ServiceSummary
	var e entry
	for i := 0; dec.More(); i++ {
		e = entry{Nodes: e.Nodes[:0], Tags: e.Tags[:0]}
		if err := dec.Decode(&e); err != nil {
			return nil, err
		}
		if e.Name == "" {
			return nil, fmt.Errorf("%w: summary %d has no name", ErrShape, i)
		}
		if e.InstanceCount < 0 || e.ChecksPassing < 0 || e.ChecksWarning < 0 || e.ChecksCritical < 0 {
			return nil, fmt.Errorf("%w: summary %d (%.100q) has a negative count", ErrShape, i, e.Name)
		}
		nodes, err := DigestStrings(e.Nodes, 'n')
		if err != nil {
			return nil, fmt.Errorf("%w: summary %d (%.100q) Nodes: %w", ErrShape, i, e.Name, err)
		}
		tags, err := DigestStrings(e.Tags, 't')
		if err != nil {
			return nil, fmt.Errorf("%w: summary %d (%.100q) Tags: %w", ErrShape, i, e.Name, err)
		}
		out = append(out, beacon.ServiceSummary{
			Name: unique.Make(e.Name).Value(), Instances: e.InstanceCount,
			Passing: e.ChecksPassing, Warning: e.ChecksWarning, Critical: e.ChecksCritical,
			Digest: mix(nodes, tags),
		})
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, err
	}
	return out, nil
}

// DigestStrings returns the sum of the FNV-1a hashes of seed followed by
// each element of raw, a JSON array of strings (or null, or empty): a
// digest independent of the elements' order. Each element is hashed as it
// is written, escapes included: one agent writes a name the same way every
// time. raw must be valid JSON (json.Decoder checked it).
func DigestStrings(raw []byte, seed byte) (uint64, error) {
	i := skipSpace(raw, 0)
	if i == len(raw) || hasPrefix(raw[i:], "null") {
		return 0, nil
	}
	if raw[i] != '[' {
		return 0, errors.New("not an array")
	}
	var sum uint64
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == ']' {
		return 0, nil
	}
	for i < len(raw) {
		if raw[i] != '"' {
			return 0, errors.New("an element is not a string")
		}
		end := i + 1
		for end < len(raw) && raw[end] != '"' {
			if raw[end] == '\\' {
				end++ // the escaped byte cannot end the string
			}
			end++
		}
		if end >= len(raw) {
			return 0, errors.New("an unterminated string")
		}
		sum += fnv(fnv(offset64, []byte{seed}), raw[i+1:end])
		i = skipSpace(raw, end+1)
		if i == len(raw) {
			break
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case ']':
			return sum, nil
		default:
			return 0, errors.New("an element is not a string")
		}
	}
	return 0, errors.New("an unterminated array")
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

// mix folds the nodes' and the tags' digests into one.
func mix(nodes, tags uint64) uint64 {
	var b [16]byte
	for i := range 8 {
		b[i], b[8+i] = byte(nodes>>(8*i)), byte(tags>>(8*i))
	}
	return fnv(offset64, b[:])
}

// FNV-1a, 64 bits, inline: hash/fnv's would allocate a hasher per string.
const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
)

func fnv(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= prime64
	}
	return h
}
