package consulhttp

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"net/http"
	"net/url"
	"sync"

	"github.com/beaconsd/beacon"
)

// Reuse of unchanged instances across answers.
//
// Consul answers a health query with the whole list every time: a service
// of 2,000 instances with one change a second is 2,000 entries decoded a
// second for one that changed. An entry whose bytes are the same as in the
// previous answer to the same query (its indexes, checks and content all
// the same: Consul writes an entry deterministically) decodes to the same
// instance, so the previous answer's instance is handed out again and the
// entry is never decoded. Entries are compared by a seeded 64-bit hash of
// their bytes and their length: the seed is random per process, so an
// agent cannot craft a collision, and one by chance is a 2^-64 event per
// pair of entries.
//
// Safety: an entry is reused only if a byte-identical one (by hash) passed
// the full decoder before; every other entry is decoded, and so
// validated, as without reuse. The framing between entries is checked by
// splitEntries; anything it does not recognise goes to the full decoder.
// Memory: per query key, only the last answer, and only for answers of
// at least reuseMin entries (small services gain little and a cache
// watching thousands of them keeps nothing more), for at most reuseKeys
// keys holding at most reuseEntries entries in all: a memo keeps a copy
// of each instance (its strings shared with the answer's), so the bound
// must be on entries, not keys (256 services of 10,000 instances would
// otherwise keep 2.56 million copies). The least recently used keys go
// first, whether or not their watch is still open (a closed watch's key
// is never used again, so it drifts to the back); an answer of more than
// reuseEntries (or fewer than reuseMin) is not memoised at all, and its
// key's older memo is dropped.

const (
	reuseMin  = 64
	reuseKeys = 256
	// reuseEntries bounds the entries memoised across all keys of a
	// client: at about 250 bytes an entry (a 168-byte beacon.Instance
	// copy and its sum's map slot), some 25 MB at most.
	reuseEntries = 100_000
)

// entrySum identifies an entry's bytes.
type entrySum struct {
	h uint64
	n int
}

// memo is the last answer to one query: each entry's sum and what it
// decoded to (a copy the caller never sees, so callers may change their
// slice).
type memo[T any] struct {
	at   map[entrySum]int32
	vals []T
}

type reuseCache struct {
	mu    sync.Mutex
	seed  maphash.Seed
	memos map[string]*list.Element // of lru, by query key
	lru   list.List                // *memoSlot, most recently used first
	kept  int                      // entries of every memo in lru
	// maxKeys and maxEntries bound lru (reuseKeys and reuseEntries;
	// smaller in tests).
	maxKeys, maxEntries int
	bufs                sync.Pool // *bytes.Buffer, for reading answers
}

// memoSlot is one key's memo in the LRU list.
type memoSlot struct {
	key     string
	m       any // *memo[T]
	entries int
}

func newReuseCache() *reuseCache {
	return &reuseCache{seed: maphash.MakeSeed(), memos: make(map[string]*list.Element), maxKeys: reuseKeys, maxEntries: reuseEntries}
}

// last returns key's memo, nil for none, and marks it used. A memo is
// never changed once stored, so concurrent queries of one key may share
// it.
func last[T any](r *reuseCache, key string) *memo[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.memos[key]
	if e == nil {
		return nil
	}
	r.lru.MoveToFront(e)
	m, _ := e.Value.(*memoSlot).m.(*memo[T])
	return m
}

// put stores m, of entries entries, as key's memo, evicting the least
// recently used keys until at most maxKeys keys and maxEntries entries
// are kept. A memo of more than maxEntries is not stored, and key's last
// one is dropped (it is of an older answer).
func (r *reuseCache) put(key string, m any, entries int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.memos[key]; e != nil {
		r.drop(e)
	}
	if entries > r.maxEntries {
		return
	}
	r.memos[key] = r.lru.PushFront(&memoSlot{key: key, m: m, entries: entries})
	r.kept += entries
	for r.lru.Len() > r.maxKeys || r.kept > r.maxEntries {
		r.drop(r.lru.Back()) // never key's: it fits alone, and is first
	}
}

// keep stores next as key's memo after a good answer; nil (the answer
// was too small or too large to keep, or did not split) drops key's older
// memo, of no more use.
func keep[T any](r *reuseCache, key string, next *memo[T]) {
	if next == nil {
		r.forget(key)
		return
	}
	r.put(key, next, len(next.vals))
}

// forget drops key's memo, if any.
func (r *reuseCache) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.memos[key]; e != nil {
		r.drop(e)
	}
}

// drop removes e's memo. Caller holds r.mu.
func (r *reuseCache) drop(e *list.Element) {
	s := r.lru.Remove(e).(*memoSlot)
	delete(r.memos, s.key)
	r.kept -= s.entries
}

// keptEntries is how many entries the memos hold in all, for tests.
func (r *reuseCache) keptEntries() (keys, entries int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len(), r.kept
}

// reuseKey names req's query for reuse: its path and parameters less the
// blocking index and wait, so a watch's next answer, and a plain read of
// the same query, reuse its last one. Reuse is by the entries' bytes, so
// a key shared by other callers costs hits, never correctness.
func reuseKey(kind string, req *request) string {
	q := make(url.Values, len(req.query))
	for k, v := range req.query {
		if k != "index" && k != "wait" {
			q[k] = v
		}
	}
	return kind + " " + req.path + "?" + q.Encode()
}

// getReusing sends req and decodes its answer, a JSON array of objects,
// entry by entry with decode, reusing key's last answer for entries whose
// bytes did not change; full decodes the whole answer when it does not
// split (full says what is wrong with it, or decodes what Consul never
// writes but JSON allows).
func getReusing[T any](c *Client, ctx context.Context, req *request, key string, what func() string,
	decode func(entry []byte, i int) (T, error), full func(http.Header, io.Reader) ([]T, beacon.QueryMeta, error)) ([]T, beacon.QueryMeta, error) {
	prev := last[T](c.reuse, key)
	return getDecoded(c, ctx, req, what, func(h http.Header, body io.Reader) ([]T, beacon.QueryMeta, error) {
		meta, err := decodeMeta(h)
		if err != nil {
			return nil, beacon.QueryMeta{}, err
		}
		buf, _ := c.reuse.bufs.Get().(*bytes.Buffer)
		if buf == nil {
			buf = new(bytes.Buffer)
		}
		defer func() {
			if buf.Cap() <= 16<<20 { // a rare huge answer is not kept
				buf.Reset()
				c.reuse.bufs.Put(buf)
			}
		}()
		if err := readBody(buf, body); err != nil {
			return nil, beacon.QueryMeta{}, err
		}
		out, next, ok, err := decodeEntries(buf.Bytes(), c.reuse.seed, prev, reuseMin, c.reuse.maxEntries, decode)
		if !ok {
			out, _, err = full(h, bytes.NewReader(buf.Bytes()))
		}
		if err != nil {
			return nil, beacon.QueryMeta{}, err // the last good memo stays
		}
		keep(c.reuse, key, next)
		return out, meta, nil
	})
}

// decodeEntries decodes raw, a JSON array of objects, with decode,
// reusing prev's values for entries byte-identical to its. It returns the
// memo of this answer (nil when it has fewer than keepMin or more than
// keepMax entries), and false when raw does not split (see splitEntries).
// Nothing returned refers to raw.
func decodeEntries[T any](raw []byte, seed maphash.Seed, prev *memo[T], keepMin, keepMax int, decode func([]byte, int) (T, error)) ([]T, *memo[T], bool, error) {
	entries, ok := splitEntries(raw)
	if !ok {
		return nil, nil, false, nil
	}
	out := make([]T, len(entries))
	var next *memo[T]
	if len(entries) >= keepMin && len(entries) <= keepMax {
		next = &memo[T]{at: make(map[entrySum]int32, len(entries))}
	}
	for i, e := range entries {
		sum := entrySum{h: maphash.Bytes(seed, e), n: len(e)}
		if j, ok := prev.lookup(sum); ok {
			out[i] = j
		} else {
			v, err := decode(e, i)
			if err != nil {
				return nil, nil, true, err
			}
			out[i] = v
		}
		if next != nil {
			next.at[sum] = int32(i)
		}
	}
	if next != nil {
		next.vals = append([]T(nil), out...)
	}
	return out, next, true, nil
}

func (m *memo[T]) lookup(sum entrySum) (T, bool) {
	if m == nil {
		var zero T
		return zero, false
	}
	j, ok := m.at[sum]
	if !ok {
		var zero T
		return zero, false
	}
	return m.vals[j], true
}

// decodeHealthReusing is decodeHealth, reusing prev's instances for
// entries byte-identical to its, for the fuzz target: it returns this
// answer's memo (nil when it has fewer than keepMin entries or did not
// split).
func decodeHealthReusing(h http.Header, body io.Reader, seed maphash.Seed, prev *memo[beacon.Instance], keepMin int) ([]beacon.Instance, beacon.QueryMeta, *memo[beacon.Instance], error) {
	meta, err := decodeMeta(h)
	if err != nil {
		return nil, beacon.QueryMeta{}, nil, err
	}
	var buf bytes.Buffer
	if err := readBody(&buf, body); err != nil {
		return nil, beacon.QueryMeta{}, nil, err
	}
	var nodeMeta metaSharer
	out, next, ok, err := decodeEntries(buf.Bytes(), seed, prev, keepMin, math.MaxInt, func(e []byte, i int) (beacon.Instance, error) {
		return decodeHealthEntry(e, i, &nodeMeta)
	})
	if !ok {
		out, _, err = decodeHealth(h, bytes.NewReader(buf.Bytes()))
	}
	if err != nil {
		return nil, beacon.QueryMeta{}, nil, err
	}
	return out, meta, next, nil
}

// decodeHealthEntry decodes entry i of a health answer.
func decodeHealthEntry(e []byte, i int, nodeMeta *metaSharer) (beacon.Instance, error) {
	var he healthEntry
	if err := json.Unmarshal(e, &he); err != nil {
		return beacon.Instance{}, fmt.Errorf("%w: entry %d: %w", beacon.ErrMalformedResponse, i, err)
	}
	return he.instance(i, nodeMeta)
}

// readBody reads all of body into buf, with decodeJSON's errors: a
// connection that fails mid-answer is ErrUnavailable, the size cap
// ErrMalformedResponse.
func readBody(buf *bytes.Buffer, body io.Reader) error {
	rec := &readRecorder{r: body}
	if _, err := buf.ReadFrom(rec); err != nil {
		if rec.transportErr() != nil {
			return fmt.Errorf("%w: reading the answer: %w", beacon.ErrUnavailable, err)
		}
		if errors.Is(err, beacon.ErrMalformedResponse) {
			return err // the size cap
		}
		return fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
	}
	return nil
}

// splitEntries splits a JSON array of objects into the objects' bytes,
// without decoding them. It reports false for anything else (another top
// level value, an element that is not an object, unbalanced brackets, an
// unterminated string, data after the array): the caller then decodes in
// full. An element's bytes are checked only for balance and strings here;
// each is fully decoded unless identical to one that was.
func splitEntries(b []byte) ([][]byte, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	var out [][]byte
	if i < len(b) && b[i] == ']' {
		return out, skipSpace(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '{' {
			return nil, false
		}
		end, ok := objectEnd(b, i)
		if !ok {
			return nil, false
		}
		out = append(out, b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return out, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

// objectEnd returns the index just past the object (or array) opening at
// b[start], matching brackets outside strings.
func objectEnd(b []byte, start int) (int, bool) {
	depth := 0
	for i := start; i < len(b); i++ {
		switch structural[b[i]] {
		case 0:
			continue
		case '"':
			// Skip the string, to the first quote no backslash escapes;
			// a byte loop over a table: most strings are short.
			for i++; i < len(b); i++ {
				if c := b[i]; c == '\\' {
					i++
				} else if c == '"' {
					break
				}
			}
			if i >= len(b) {
				return 0, false
			}
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// structural marks the bytes objectEnd acts on: quotes and brackets ('['
// counts as '{', ']' as '}': a valid entry balances both).
var structural = [256]byte{'"': '"', '{': '{', '[': '{', '}': '}', ']': '}'}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
