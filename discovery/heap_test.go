package discovery_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// watchHeapCeiling is the most heap TestWatchHeapCeiling lets a watch of
// a service of one instance keep: about 1.5 times what it measured when
// written (2026-11-30: 1,135–1,235 B, down from 2,347 B before the watch
// was slimmed), so that it fails when per-watch state grows back, not at
// every small change. Of the 1,175 B: the watch 416 (watch struct) + 96
// (its ready channel), its first snapshot 192, the instance about 230,
// the Watcher 48, the cache's and the feed's maps about 150.
const watchHeapCeiling = 1800

// TestWatchHeapCeiling pins what one more watch costs the heap: 1,000
// services of one instance (4 meta keys and a tag, as BenchmarkWatchMany's
// fleet) watched on a real agent, beyond 100 watched first, so that what
// a cache pays once (connections, the change feed, the long polls of its
// first watches) is not counted. Every one of the 1,000 is driven by the
// change feed, as all but the first 63 watches of a large cache are.
// BEACON_HEAPPROFILE=path writes heap profiles at both readings (path.base
// and path).
func TestWatchHeapCeiling(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 1,100 services into an agent")
	}
	srv := consultest.NewServer(t)
	meta := map[string]string{}
	for i := range 4 {
		meta[fmt.Sprintf("key%013d", i)] = strings.Repeat(strconv.Itoa(i), 16)
	}
	const first, more = 100, 1000
	pop := consultest.Populate(t, srv, consultest.Fleet{Services: first + more, Instances: 1, Prefix: "heap", Tags: []string{"t"}, Meta: meta})
	services := pop.Services()
	c := newCache(t, srv.Config(), discovery.WithWaitTime(10*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Room for every handle up front, closed by one cleanup: growing the
	// slice, or a cleanup per handle, would be counted as the watches'.
	ws := make([]*discovery.Watcher, 0, first+more)
	t.Cleanup(func() {
		for _, w := range ws {
			w.Close()
		}
	})
	watch := func(names []string) {
		n := len(ws)
		for _, name := range names {
			w, err := c.Watch(beacon.Query{Service: name})
			if err != nil {
				t.Fatalf("Watch(%q) = %v", name, err)
			}
			ws = append(ws, w)
		}
		for i, w := range ws[n:] {
			s, err := w.Wait(ctx)
			if err != nil || len(s.Instances) != 1 {
				t.Fatalf("watch of %q: Wait() = %v, %v; want one instance", names[i], s, err)
			}
		}
	}
	// The least of three readings after a GC: an answer the feed is
	// decoding at that moment is not memory the cache keeps.
	heap := func() uint64 {
		var least uint64
		for i := range 3 {
			time.Sleep(300 * time.Millisecond)
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if i == 0 || ms.HeapAlloc < least {
				least = ms.HeapAlloc
			}
		}
		return least
	}
	watch(services[:first])
	before := heap()
	if path := os.Getenv("BEACON_HEAPPROFILE"); path != "" {
		writeHeap(t, path+".base")
	}
	watch(services[first:])
	after := heap()
	if path := os.Getenv("BEACON_HEAPPROFILE"); path != "" {
		// With -memprofilerate 4096 for a precise one; compare it with one
		// taken before the second lot (-base) to see what a watch keeps.
		writeHeap(t, path)
	}
	per := (int64(after) - int64(before)) / more
	t.Logf("%d B of heap per watch of a service of one instance (%d watches beyond the first %d)", per, more, first)
	if per > watchHeapCeiling {
		t.Errorf("a watch keeps %d B of heap, want at most %d: has per-watch state grown back? (go test -run '^$' -bench WatchMany ./bench/ with BEACON_HEAPPROFILE shows where)", per, watchHeapCeiling)
	}
}

func writeHeap(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}
