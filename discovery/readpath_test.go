package discovery_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// pathStats waits until the watch of service (pinned or not) has stats for
// which cond holds, and returns them.
func pathStats(t *testing.T, c *discovery.Cache, service string, pinned bool, what string, cond func(discovery.WatchStats) bool) discovery.WatchStats {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	end := time.After(deadline)
	var last discovery.WatchStats
	for {
		for _, st := range c.Stats() {
			if st.Service == service && st.ReadPinned == pinned && !st.Failover {
				last = st
				if cond(st) {
					return st
				}
			}
		}
		select {
		case <-tick.C:
		case <-end:
			t.Fatalf("%s: not within %v (last stats %+v)", what, deadline, last)
		}
	}
}

// TestReadPathSwitch switches one running cache between the agent's
// streaming backend, plain blocking queries and the agent cache, and back:
// each switch shows in X-Consul-Query-Backend (and X-Cache) without a
// restart, and changes keep arriving on every path.
func TestReadPathSwitch(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "a", "web", beacon.HealthPassing)
	// A short wait: every watch answers (and shows its backend) often.
	c := newCache(t, srv.Config(), discovery.WithWaitTime(time.Second))
	w, err := c.Watch(beacon.Query{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := w.Wait(ctx); err != nil {
		t.Fatalf("Wait() = %v", err)
	}
	want := []string{"a"}
	steps := []struct {
		path    discovery.ReadPath
		backend beacon.QueryBackend
		cache   bool // answers carry X-Cache
	}{
		{discovery.ReadStreaming, beacon.QueryBackendStreaming, false},
		{discovery.ReadBlocking, beacon.QueryBackendBlockingQuery, false},
		{discovery.ReadCached, beacon.QueryBackendBlockingQuery, true},
		{discovery.ReadStreaming, beacon.QueryBackendStreaming, false},
		{discovery.ReadBlocking, beacon.QueryBackendBlockingQuery, false},
	}
	for i, s := range steps {
		if err := c.SetReadPath(s.path); err != nil {
			t.Fatalf("SetReadPath(%v) = %v", s.path, err)
		}
		if got := c.ReadPath(); got != s.path {
			t.Fatalf("ReadPath() = %v, want %v", got, s.path)
		}
		st := pathStats(t, c, "web", false, s.path.String()+" answers", func(st discovery.WatchStats) bool {
			return st.ReadPath == s.path && st.Backend == s.backend && (st.AgentCache != "") == s.cache
		})
		t.Logf("%v: backend %s, X-Cache %q", s.path, st.Backend, st.AgentCache)
		// A change still arrives on this path.
		id := string(rune('b' + i))
		register(t, r, id, "web", beacon.HealthPassing)
		want = append(want, id)
		until(t, w, s.path.String()+": "+id+" appears", func(sn *discovery.Snapshot) bool { return slices.Equal(ids(sn), want) })
	}
	if err := c.SetReadPath(discovery.ReadPath(9)); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("SetReadPath(9) = %v, want ErrInvalid", err)
	}
}

// TestUseReadPathPinsOneWatch: a watch pinned to blocking queries stays
// off streaming while the cache's other watch of the same service streams.
func TestUseReadPathPinsOneWatch(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "a", "web", beacon.HealthPassing)
	c := newCache(t, srv.Config(), discovery.WithWaitTime(time.Second), discovery.WithReadPath(discovery.ReadStreaming))
	free, err := c.Watch(beacon.Query{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer free.Close()
	pinned, err := c.Watch(beacon.Query{Service: "web"}, discovery.UseReadPath(discovery.ReadBlocking))
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	pathStats(t, c, "web", false, "the free watch streams", func(st discovery.WatchStats) bool {
		return st.Backend == beacon.QueryBackendStreaming
	})
	pathStats(t, c, "web", true, "the pinned watch blocks", func(st discovery.WatchStats) bool {
		return st.ReadPath == discovery.ReadBlocking && st.Backend == beacon.QueryBackendBlockingQuery
	})
	register(t, r, "b", "web", beacon.HealthPassing)
	until(t, pinned, "b appears to the pinned watch", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"a", "b"}) })
	// Switching the cache leaves the pinned watch alone.
	if err := c.SetReadPath(discovery.ReadCached); err != nil {
		t.Fatal(err)
	}
	pathStats(t, c, "web", false, "the free watch reads the agent cache", func(st discovery.WatchStats) bool {
		return st.ReadPath == discovery.ReadCached && st.AgentCache != ""
	})
	if st := pathStats(t, c, "web", true, "pinned", func(discovery.WatchStats) bool { return true }); st.ReadPath != discovery.ReadBlocking {
		t.Errorf("pinned watch ReadPath = %v after SetReadPath(cached), want blocking", st.ReadPath)
	}
	if _, err := c.Watch(beacon.Query{Service: "web"}, discovery.UseReadPath(discovery.ReadPath(7))); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Watch(UseReadPath(7)) = %v, want ErrInvalid", err)
	}
	if _, err := discovery.New(srv.Config(), discovery.WithReadPath(discovery.ReadPath(7))); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("New(WithReadPath(7)) = %v, want ErrInvalid", err)
	}
}

func TestParseReadPath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want discovery.ReadPath
		ok   bool
	}{
		{"streaming", discovery.ReadStreaming, true},
		{" Blocking\n", discovery.ReadBlocking, true},
		{"blocking-query", discovery.ReadBlocking, true},
		{"cached", discovery.ReadCached, true},
		{"", 0, false},
		{"off", 0, false},
	} {
		got, err := discovery.ParseReadPath(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseReadPath(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if !tc.ok && !errors.Is(err, beacon.ErrInvalid) {
			t.Errorf("ParseReadPath(%q) error %v is not ErrInvalid", tc.in, err)
		}
	}
}

func TestReadPathFromEnv(t *testing.T) {
	t.Setenv(discovery.ReadPathEnv, "")
	t.Setenv(discovery.ReadPathFileEnv, "")
	if _, ok, err := discovery.ReadPathFromEnv(); ok || err != nil {
		t.Errorf("ReadPathFromEnv() unset = ok %v, %v; want false, nil", ok, err)
	}
	file := filepath.Join(t.TempDir(), "read-path")
	if err := os.WriteFile(file, []byte("cached\n# the rest is ignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(discovery.ReadPathFileEnv, file)
	if p, ok, err := discovery.ReadPathFromEnv(); p != discovery.ReadCached || !ok || err != nil {
		t.Errorf("ReadPathFromEnv() from file = %v, %v, %v; want cached", p, ok, err)
	}
	t.Setenv(discovery.ReadPathEnv, "blocking") // the variable wins over the file
	if p, ok, err := discovery.ReadPathFromEnv(); p != discovery.ReadBlocking || !ok || err != nil {
		t.Errorf("ReadPathFromEnv() = %v, %v, %v; want blocking", p, ok, err)
	}
	t.Setenv(discovery.ReadPathEnv, "sometimes")
	if _, _, err := discovery.ReadPathFromEnv(); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("ReadPathFromEnv() with %q = %v, want ErrInvalid", "sometimes", err)
	}
	t.Setenv(discovery.ReadPathEnv, "")
	t.Setenv(discovery.ReadPathFileEnv, filepath.Join(t.TempDir(), "missing"))
	if _, _, err := discovery.ReadPathFromEnv(); err == nil {
		t.Error("ReadPathFromEnv() with a missing file = nil error, want one")
	}
}

// TestReadPathFile: a running cache follows the file an operator writes.
func TestReadPathFile(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "a", "web", beacon.HealthPassing)
	file := filepath.Join(t.TempDir(), "read-path")
	if err := os.WriteFile(file, []byte("blocking\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCache(t, srv.Config(), discovery.WithWaitTime(time.Second), discovery.WithReadPathFile(file, 50*time.Millisecond))
	if got := c.ReadPath(); got != discovery.ReadBlocking {
		t.Fatalf("ReadPath() at New = %v, want blocking (from the file)", got)
	}
	w, err := c.Watch(beacon.Query{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pathStats(t, c, "web", false, "blocking from the file", func(st discovery.WatchStats) bool {
		return st.ReadPath == discovery.ReadBlocking && st.Backend == beacon.QueryBackendBlockingQuery
	})
	if err := os.WriteFile(file, []byte("streaming\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pathStats(t, c, "web", false, "streaming after the file changed", func(st discovery.WatchStats) bool {
		return st.ReadPath == discovery.ReadStreaming && st.Backend == beacon.QueryBackendStreaming
	})
	// Emptied (as between a truncation and its write): the path in use
	// stays, over ten re-reads; an absence, so watched for a span.
	if err := os.WriteFile(file, []byte("blocking\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pathStats(t, c, "web", false, "blocking again", func(st discovery.WatchStats) bool {
		return st.ReadPath == discovery.ReadBlocking
	})
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if got := c.ReadPath(); got != discovery.ReadBlocking {
			t.Fatalf("ReadPath() after the file was emptied = %v, want blocking kept", got)
		}
	}
	if err := os.WriteFile(file, []byte("nonsense\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := discovery.New(srv.Config(), discovery.WithReadPathFile(file, 0)); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("New(WithReadPathFile(nonsense)) = %v, want ErrInvalid", err)
	}
}
