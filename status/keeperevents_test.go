package status

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/keeper"
)

// statusKeeper is a keeper with a Status the test changes, and no events.
type statusKeeper struct {
	mu sync.Mutex
	st keeper.Status
}

func (k *statusKeeper) Status() keeper.Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.st
}

func (k *statusKeeper) set(f func(*keeper.Status)) {
	k.mu.Lock()
	f(&k.st)
	k.mu.Unlock()
}

// notifyingKeeper also has events, which the test sends.
type notifyingKeeper struct {
	statusKeeper
	lmu       sync.Mutex
	listeners map[int]func(keeper.Event)
	next      int
}

func (k *notifyingKeeper) Notify(f func(keeper.Event)) func() {
	k.lmu.Lock()
	defer k.lmu.Unlock()
	if k.listeners == nil {
		k.listeners = map[int]func(keeper.Event){}
	}
	id := k.next
	k.next++
	k.listeners[id] = f
	return func() {
		k.lmu.Lock()
		delete(k.listeners, id)
		k.lmu.Unlock()
	}
}

func (k *notifyingKeeper) send(e keeper.Event) {
	k.lmu.Lock()
	defer k.lmu.Unlock()
	for _, f := range k.listeners {
		f(e)
	}
}

func (k *notifyingKeeper) listening() int {
	k.lmu.Lock()
	defer k.lmu.Unlock()
	return len(k.listeners)
}

// samples waits until fs has been read n more times.
func samples(t *testing.T, fs *fakeStats, n int) {
	t.Helper()
	for range n {
		select {
		case <-fs.calls:
		case <-time.After(30 * time.Second):
			t.Fatal("the sampler did not sample within 30 s")
		}
	}
}

func countKind(evs []Event, k EventKind) int {
	n := 0
	for _, e := range evs {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// TestKeeperEventsRecorded: every keeper kind lands in the timeline under
// the status kind of the same string, with the instance ID and the
// addresses stripped of user info; the sampler then infers no move and no
// maintenance from the Status; Close unsubscribes.
func TestKeeperEventsRecorded(t *testing.T) {
	fs := &fakeStats{calls: make(chan struct{}, 1)}
	fs.set(discovery.WatchStats{Service: "web", Instances: 1, Age: time.Second})
	k := &notifyingKeeper{}
	k.set(func(s *keeper.Status) { s.Agent, s.Registered = "127.0.0.1:8500", true })
	h := New(WithCache(fs), WithKeeper(k, "web-1"), WithSampling(time.Millisecond, 5))
	defer h.Close()
	if k.listening() != 1 {
		t.Fatalf("New subscribed %d times to the keeper, want 1", k.listening())
	}
	secret := "http://user:pw-9c1@127.0.0.2:8500"
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	kinds := []keeper.EventKind{keeper.EventRegistered, keeper.EventHeartbeatFailed, keeper.EventHeartbeatRecovered,
		keeper.EventTokenRotated, keeper.EventMaintenance, keeper.EventStaleCopyRemoved, keeper.EventDeregistered}
	for i, kind := range kinds {
		k.send(keeper.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: kind, Agent: secret, Detail: string(kind) + " detail"})
	}
	k.send(keeper.Event{Time: t0.Add(time.Minute), Kind: keeper.EventMoved, Agent: "127.0.0.2:8500", From: secret, Detail: secret + " → 127.0.0.2:8500"})

	evs := h.Events().Last()
	if len(evs) != len(kinds)+1 {
		t.Fatalf("timeline has %d events, want %d: %+v", len(evs), len(kinds)+1, evs)
	}
	moved := evs[0]
	if moved.Kind != KeeperMoved || moved.Detail != "http://127.0.0.2:8500 → 127.0.0.2:8500" || moved.Instance != "web-1" {
		t.Errorf("moved = %+v, want keeper_moved with its addresses stripped", moved)
	}
	for i, e := range evs[1:] {
		want := kinds[len(kinds)-1-i]
		if string(e.Kind) != string(want) || e.Instance != "web-1" || e.Agent != "http://127.0.0.2:8500" || !e.Time.Equal(t0.Add(time.Duration(len(kinds)-1-i)*time.Second)) {
			t.Errorf("event %d = %+v, want kind %q for web-1 on http://127.0.0.2:8500 at the keeper's time", i, e, want)
		}
	}
	for kk, sk := range keeperKinds {
		if string(kk) != string(sk) {
			t.Errorf("keeper kind %q recorded as %q", kk, sk)
		}
	}
	if len(keeperKinds) != len(kinds)+1 {
		t.Errorf("keeperKinds has %d kinds, the test sends %d", len(keeperKinds), len(kinds)+1)
	}

	// The Status moves and enters maintenance: the keeper reports those
	// itself, so the sampler must not add its own.
	samples(t, fs, 2)
	k.set(func(s *keeper.Status) { s.Agent, s.Maintenance = "127.0.0.2:8500", true })
	samples(t, fs, 3)
	evs = h.Events().Last()
	if n, m := countKind(evs, KeeperMoved), countKind(evs, Maintenance); n != 1 || m != 1 {
		t.Errorf("%d keeper_moved and %d maintenance events, want the keeper's 1 each: %+v", n, m, evs)
	}
	body := get(t, h, http.MethodGet, "/").Body.String()
	if strings.Contains(body, "pw-9c1") || strings.Contains(body, "user:") {
		t.Errorf("the page shows an address's user info")
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if k.listening() != 0 {
		t.Errorf("after Close %d listeners remain", k.listening())
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeeperWithoutEventsInferred: a keeper without Notify still gets its
// moves and maintenance inferred from successive Status samples.
func TestKeeperWithoutEventsInferred(t *testing.T) {
	fs := &fakeStats{calls: make(chan struct{}, 1)}
	fs.set(discovery.WatchStats{Service: "web", Instances: 1, Age: time.Second})
	k := &statusKeeper{}
	k.set(func(s *keeper.Status) { s.Agent, s.Registered = "127.0.0.1:8500", true })
	h := New(WithCache(fs), WithKeeper(k, "web-1"), WithSampling(time.Millisecond, 5))
	defer h.Close()
	samples(t, fs, 2)
	k.set(func(s *keeper.Status) { s.Agent, s.Maintenance = "127.0.0.2:8500", true })
	samples(t, fs, 3)
	evs := h.Events().Last()
	if n, m := countKind(evs, KeeperMoved), countKind(evs, Maintenance); n != 1 || m != 1 {
		t.Errorf("%d keeper_moved and %d maintenance events inferred, want 1 each: %+v", n, m, evs)
	}
}

// TestKeeperReportFields: the new Status fields reach the JSON and HTML:
// the last heartbeat's result and the agents holding old copies, without
// their user info; previous_agents is [] rather than null.
func TestKeeperReportFields(t *testing.T) {
	t0 := time.Now().Add(-time.Second)
	k := fakeKeeper{Agent: "127.0.0.2:8500", Registered: true, LastHeartbeat: t0, LastHeartbeatOK: true,
		PreviousAgents: []string{"http://u:pw-77@127.0.0.1:8500", "127.0.0.3:8500"}, Failovers: 1}
	h := New(WithKeeper(k, "web-1"), WithSampling(0, 0))
	defer h.Close()
	rep := h.Report()
	if got := rep.Keeper; got == nil || !got.LastHeartbeatOK || strings.Join(got.PreviousAgents, ",") != "http://127.0.0.1:8500,127.0.0.3:8500" {
		t.Errorf("Report().Keeper = %+v, want last_heartbeat_ok and the two previous agents without user info", got)
	}
	js := get(t, h, http.MethodGet, "/?format=json").Body.String()
	for _, want := range []string{`"last_heartbeat_ok":true`, `"previous_agents":["http://127.0.0.1:8500","127.0.0.3:8500"]`} {
		if !strings.Contains(js, want) {
			t.Errorf("JSON lacks %s: %s", want, js)
		}
	}
	html := get(t, h, http.MethodGet, "/").Body.String()
	for _, want := range []string{"Copies left on", "<code>127.0.0.3:8500</code>", `<span class="pill ok">accepted</span>`} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(js+html, "pw-77") {
		t.Errorf("a previous agent's password is shown")
	}

	h2 := New(WithKeeper(fakeKeeper{}, "web-1"), WithSampling(0, 0))
	defer h2.Close()
	if js := get(t, h2, http.MethodGet, "/?format=json").Body.String(); !strings.Contains(js, `"previous_agents":[]`) || !strings.Contains(js, `"last_heartbeat_ok":false`) {
		t.Errorf("JSON of a keeper with no previous agents: %s", js)
	}
}
