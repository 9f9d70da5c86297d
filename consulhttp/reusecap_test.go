package consulhttp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

// TestReuseMemosBoundedByEntries: the memos of a client keep at most
// reuseEntries entries in all, however many large services it queries;
// the least recently used key goes first; an answer larger than the whole
// bound is not memoised; and the latest key's memo still serves reuse.
//
// This test can fail: bounded by keys alone (256), 256 answers of 10,000
// entries keep 2,560,000.
func TestReuseMemosBoundedByEntries(t *testing.T) {
	r := newReuseCache()
	const per = 10_000
	m := &memo[beacon.Instance]{} // the size is put's to count; no need to fill it
	for i := range reuseKeys {
		r.put(fmt.Sprintf("k%d", i), m, per)
		if keys, kept := r.keptEntries(); kept > reuseEntries {
			t.Fatalf("after %d answers of %d entries: %d keys keep %d entries, want at most %d", i+1, per, keys, kept, reuseEntries)
		}
	}
	if last[beacon.Instance](r, fmt.Sprintf("k%d", reuseKeys-1)) == nil {
		t.Error("the latest key's memo was evicted")
	}

	// Least recently used first: with the bound full, the key read last
	// stays and the one neither read nor written longest goes.
	r = newReuseCache()
	full := reuseEntries / per
	for i := range full {
		r.put(fmt.Sprintf("k%d", i), m, per)
	}
	last[beacon.Instance](r, "k0")
	r.put("new", m, per)
	if last[beacon.Instance](r, "k0") == nil || last[beacon.Instance](r, "k1") != nil {
		t.Errorf("after reading k0 and adding a key: k0 kept %v, k1 kept %v; want k0 kept, k1 evicted",
			last[beacon.Instance](r, "k0") != nil, last[beacon.Instance](r, "k1") != nil)
	}

	// Real answers, under a small bound: decoded and kept as getReusing
	// does.
	r = newReuseCache()
	r.maxEntries = 1_000
	decoded := 0
	decode := func(e []byte, i int) (beacon.Instance, error) {
		decoded++
		var nm metaSharer
		return decodeHealthEntry(e, i, &nm)
	}
	remember := func(key string, n int) {
		t.Helper()
		out, next, ok, err := decodeEntries(healthEntries(key, n), r.seed, last[beacon.Instance](r, key), reuseMin, r.maxEntries, decode)
		if !ok || err != nil || len(out) != n {
			t.Fatalf("decoding %d entries of %s: %d instances, split %v, error %v", n, key, len(out), ok, err)
		}
		keep(r, key, next)
	}
	for i := range 15 {
		remember(fmt.Sprintf("svc%d", i), 300)
		if keys, kept := r.keptEntries(); kept > r.maxEntries {
			t.Fatalf("after %d answers of 300: %d keys keep %d entries, want at most %d", i+1, keys, kept, r.maxEntries)
		}
	}
	decoded = 0
	remember("svc14", 300)
	if decoded != 0 {
		t.Errorf("the latest key's unchanged answer decoded %d of its 300 entries, want 0 (all reused)", decoded)
	}
	remember("svc14", r.maxEntries+1) // it grew past the bound
	if last[beacon.Instance](r, "svc14") != nil {
		t.Error("an answer larger than the bound was memoised, or the key kept its older memo")
	}
	if _, kept := r.keptEntries(); kept > r.maxEntries {
		t.Errorf("%d entries kept after an answer over the bound, want at most %d", kept, r.maxEntries)
	}
}

// healthEntries is a health answer of n distinct entries of service svc.
func healthEntries(svc string, n int) []byte {
	entry := healthAnswer[1 : len(healthAnswer)-1]
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.ReplaceAll(entry, "web-1", fmt.Sprintf("%s-%d", svc, i)))
	}
	b.WriteByte(']')
	return []byte(b.String())
}
