package consulhttp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
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
// keys.

const (
	reuseMin  = 64
	reuseKeys = 256
)

// entrySum identifies an entry's bytes.
type entrySum struct {
	h uint64
	n int
}

// answerMemo is the last answer to one query: each entry's sum and what
// it decoded to (a copy the caller never sees, so callers may change
// their slice).
type answerMemo struct {
	at    map[entrySum]int32
	insts []beacon.Instance
}

type reuseCache struct {
	mu    sync.Mutex
	seed  maphash.Seed
	memos map[string]*answerMemo
}

func newReuseCache() *reuseCache {
	return &reuseCache{seed: maphash.MakeSeed(), memos: make(map[string]*answerMemo)}
}

// take removes and returns key's memo (nil for none): the caller owns it
// while it decodes, and concurrent queries of one key decode in full.
func (r *reuseCache) take(key string) *answerMemo {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.memos[key]
	delete(r.memos, key)
	return m
}

// put stores m as key's memo, evicting another key's when full.
func (r *reuseCache) put(key string, m *answerMemo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.memos[key]; !ok && len(r.memos) >= reuseKeys {
		for k := range r.memos { // any one: bounded, not clever
			delete(r.memos, k)
			break
		}
	}
	r.memos[key] = m
}

// decodeHealthReusing is decodeHealth, reusing prev's instances for
// entries byte-identical to its. It returns the memo of this answer (nil
// when it has fewer than keepMin entries or did not split).
func decodeHealthReusing(h http.Header, body io.Reader, seed maphash.Seed, prev *answerMemo, keepMin int) ([]beacon.Instance, beacon.QueryMeta, *answerMemo, error) {
	meta, err := decodeMeta(h)
	if err != nil {
		return nil, beacon.QueryMeta{}, nil, err
	}
	raw, err := readBody(body)
	if err != nil {
		return nil, beacon.QueryMeta{}, nil, err
	}
	entries, ok := splitEntries(raw)
	if !ok {
		// Not the framing Consul writes: the full decoder says what is wrong.
		insts, _, err := decodeHealth(h, bytes.NewReader(raw))
		if err != nil {
			return nil, beacon.QueryMeta{}, nil, err
		}
		return insts, meta, nil, nil
	}
	out := make([]beacon.Instance, len(entries))
	var next *answerMemo
	if len(entries) >= keepMin {
		next = &answerMemo{at: make(map[entrySum]int32, len(entries))}
	}
	var nodeMeta metaSharer
	for i, e := range entries {
		sum := entrySum{h: maphash.Bytes(seed, e), n: len(e)}
		if prev != nil {
			if j, ok := prev.at[sum]; ok {
				out[i] = prev.insts[j]
				if next != nil {
					next.at[sum] = int32(i)
				}
				continue
			}
		}
		var he healthEntry
		if err := json.Unmarshal(e, &he); err != nil {
			return nil, beacon.QueryMeta{}, nil, fmt.Errorf("%w: entry %d: %w", beacon.ErrMalformedResponse, i, err)
		}
		if out[i], err = he.instance(i, &nodeMeta); err != nil {
			return nil, beacon.QueryMeta{}, nil, err
		}
		if next != nil {
			next.at[sum] = int32(i)
		}
	}
	if next != nil {
		next.insts = append([]beacon.Instance(nil), out...)
	}
	return out, meta, next, nil
}

// readBody reads all of body, with decodeJSON's errors: a connection
// that fails mid-answer is ErrUnavailable, the size cap ErrMalformedResponse.
func readBody(body io.Reader) ([]byte, error) {
	rec := &readRecorder{r: body}
	raw, err := io.ReadAll(rec)
	if err != nil {
		if rec.transportErr() != nil {
			return nil, fmt.Errorf("%w: reading the answer: %w", beacon.ErrUnavailable, err)
		}
		return nil, err // the size cap, already ErrMalformedResponse
	}
	return raw, nil
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
		switch b[i] {
		case '"':
			// Skip the string: to the next quote not escaped by an odd
			// run of backslashes (IndexByte is vectorised: entries are
			// mostly strings).
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return 0, false
				}
				i += 1 + j
				k := i - 1
				for k > start && b[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
