package keeper_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// eventLog listens to a keeper as a status page would: it never blocks
// the keeper (a full buffer counts a drop, which fails the test).
type eventLog struct {
	ch      chan keeper.Event
	dropped atomic.Int64
	seen    []keeper.Event // read by the test goroutine only
	stop    func()
}

func listen(t *testing.T, k *keeper.Keeper) *eventLog {
	t.Helper()
	l := &eventLog{ch: make(chan keeper.Event, 1024)}
	l.stop = k.Notify(func(e keeper.Event) {
		select {
		case l.ch <- e:
		default:
			l.dropped.Add(1)
		}
	})
	t.Cleanup(func() {
		l.stop()
		if n := l.dropped.Load(); n > 0 {
			t.Errorf("%d events dropped: the test's buffer is too small", n)
		}
	})
	return l
}

// next waits for the next event of kind, keeping every event it reads.
func (l *eventLog) next(t *testing.T, kind keeper.EventKind) keeper.Event {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case e := <-l.ch:
			l.seen = append(l.seen, e)
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %q event within %v; seen: %s", kind, deadline, l)
		}
	}
}

// drain reads what has arrived so far.
func (l *eventLog) drain() {
	for {
		select {
		case e := <-l.ch:
			l.seen = append(l.seen, e)
		default:
			return
		}
	}
}

func (l *eventLog) count(kind keeper.EventKind) int {
	n := 0
	for _, e := range l.seen {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (l *eventLog) String() string {
	var b strings.Builder
	for _, e := range l.seen {
		fmt.Fprintf(&b, "\n  %s %s %s: %s", e.Time.Format("15:04:05.000"), e.Kind, e.Agent, e.Detail)
	}
	return b.String()
}

// TestEventsLifecycle: registered at Start, maintenance entered and left,
// registered again when the agent lost the registration, deregistered at
// Stop, in that order, each naming the agent; Status says the last
// heartbeat succeeded.
func TestEventsLifecycle(t *testing.T) {
	srv := consultest.NewServer(t)
	addr := srv.Config().Addresses[0]
	c := client(t, srv.Config())
	// The default TTL: a heartbeat slowed past TTL/3 by a loaded machine
	// would be a heartbeat_failed the test says cannot happen.
	k := newKeeper(t, srv.Config(), registration("k-ev"), keeper.WithDrainGrace(0))
	l := listen(t, k)
	start(t, k)
	if e := l.next(t, keeper.EventRegistered); e.Agent != addr || e.Detail != "started" || e.Time.IsZero() {
		t.Errorf("first event = %+v, want registered through %s, started", e, addr)
	}
	if st := k.Status(); !st.LastHeartbeatOK || st.PreviousAgents != nil {
		t.Errorf("Status() after Start = %+v, want LastHeartbeatOK and no previous agents", st)
	}

	ctx := context.Background()
	if err := k.Maintenance(ctx, true, "deploying"); err != nil {
		t.Fatal(err)
	}
	if e := l.next(t, keeper.EventMaintenance); e.Detail != "entered: deploying" || e.Agent != addr {
		t.Errorf("maintenance event = %+v, want entered: deploying on %s", e, addr)
	}
	if err := k.Maintenance(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	if e := l.next(t, keeper.EventMaintenance); e.Detail != "left" {
		t.Errorf("maintenance event = %+v, want left", e)
	}

	// Taken from the agent behind the keeper's back: the watcher sees it
	// and the keeper registers again there.
	if err := c.Deregister(ctx, "k-ev"); err != nil {
		t.Fatal(err)
	}
	if e := l.next(t, keeper.EventRegistered); e.Agent != addr || !strings.Contains(e.Detail, "lost") {
		t.Errorf("event after the agent lost it = %+v, want registered (lost) on %s", e, addr)
	}

	sctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	if err := k.Stop(sctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	// Every event is delivered before Stop returns.
	l.drain()
	if last := l.seen[len(l.seen)-1]; last.Kind != keeper.EventDeregistered || last.Agent != addr || last.Detail != "stopped" {
		t.Errorf("last event = %+v, want deregistered from %s, stopped; all:%s", last, addr, l)
	}
	if n := l.count(keeper.EventHeartbeatFailed); n != 0 {
		t.Errorf("%d heartbeat_failed events on a healthy agent:%s", n, l)
	}
	if st := k.Status(); st.LastHeartbeatOK || st.Registered {
		t.Errorf("Status() after Stop = %+v, want neither registered nor LastHeartbeatOK", st)
	}
	for i := 1; i < len(l.seen); i++ {
		if l.seen[i].Time.Before(l.seen[i-1].Time) {
			t.Errorf("events out of order:%s", l)
		}
	}
}

// TestEventsHeartbeatFailsAndRecovers: a paused agent answers nothing;
// the keeper reports the first failed heartbeat once (not each retry) and
// the recovery once the agent answers again.
func TestEventsHeartbeatFailsAndRecovers(t *testing.T) {
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	cfg.Timeout = 500 * time.Millisecond // a paused agent is given up on quickly
	k := newKeeper(t, cfg, registration("k-beat"), keeper.WithTTL(900*time.Millisecond))
	l := listen(t, k)
	start(t, k)
	l.next(t, keeper.EventRegistered)

	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()
	e := l.next(t, keeper.EventHeartbeatFailed)
	if e.Agent != cfg.Addresses[0] || e.Detail == "" {
		t.Errorf("heartbeat_failed = %+v, want the agent and the error", e)
	}
	if st := k.Status(); st.LastHeartbeatOK {
		t.Errorf("Status() after heartbeat_failed = %+v, want LastHeartbeatOK false", st)
	}
	// Several heartbeats and retries fail while it stays paused, each of
	// which could have been reported again. Each request fails by
	// cfg.Timeout at the latest and records its error when it ends, so a
	// failure recorded more than two timeouts after the first comes from
	// at least the third request of the outage.
	later := e.Time.Add(2*cfg.Timeout + 100*time.Millisecond)
	testutil.Eventually(t, deadline, "more failed requests after heartbeat_failed", func() error {
		at := k.Status().LastErrorAt
		return testutil.Want(at.After(later), "LastErrorAt %v, want after %v", at, later)
	})
	srv.Resume()
	resumed = true
	l.next(t, keeper.EventHeartbeatRecovered)
	l.drain()
	if n := l.count(keeper.EventHeartbeatFailed); n != 1 {
		t.Errorf("%d heartbeat_failed events for one outage, want 1:%s", n, l)
	}
	testutil.Eventually(t, deadline, "LastHeartbeatOK again", func() error {
		return testutil.Want(k.Status().LastHeartbeatOK, "Status() = %+v", k.Status())
	})
}

// TestEventsFailover: killing the agent holding the registration gives
// heartbeat_failed, keeper_moved (from → to) and heartbeat_recovered;
// Status lists the killed agent as holding an old copy until, restarted
// with its data, it has the copy removed: stale_copy_removed.
func TestEventsFailover(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	cnode, server := cl.Clients[0], cl.Servers[0]
	cfg := cl.Config(cnode, server)
	from, to := cfg.Addresses[0], cfg.Addresses[1]
	k := newKeeper(t, cfg, registration("k-evfo"))
	l := listen(t, k)
	start(t, k)
	l.next(t, keeper.EventRegistered)

	cnode.Kill()
	failed := l.next(t, keeper.EventHeartbeatFailed)
	moved := l.next(t, keeper.EventMoved)
	if failed.Agent != from || moved.Agent != to || moved.From != from || moved.Detail != from+" → "+to {
		t.Errorf("heartbeat_failed %+v, keeper_moved %+v; want failed on %s, moved %s → %s", failed, moved, from, from, to)
	}
	l.next(t, keeper.EventHeartbeatRecovered)
	if st := k.Status(); !slices.Equal(st.PreviousAgents, []string{from}) || st.Agent != to || !st.LastHeartbeatOK {
		t.Errorf("Status() after the failover = %+v, want agent %s, previous agents [%s]", st, to, from)
	}
	// Status hands out copies.
	st := k.Status()
	st.PreviousAgents[0] = "changed"
	if got := k.Status().PreviousAgents; got[0] != from {
		t.Errorf("changing a Status's PreviousAgents changed the keeper's: %v", got)
	}

	cnode.Restart(t, true)
	if e := l.next(t, keeper.EventStaleCopyRemoved); e.Agent != from {
		t.Errorf("stale_copy_removed = %+v, want agent %s", e, from)
	}
	if st := k.Status(); st.PreviousAgents != nil {
		t.Errorf("Status().PreviousAgents after the copy was removed = %v, want none", st.PreviousAgents)
	}
	l.drain()
	if n := l.count(keeper.EventHeartbeatFailed); n != 1 {
		t.Errorf("%d heartbeat_failed events, want 1:%s", n, l)
	}
}

// TestEventsTokenRotated: replacing the token file gives token_rotated,
// and no event, nor the Status, ever holds a token (or its digest).
func TestEventsTokenRotated(t *testing.T) {
	srv, cfg, tokenA, tokenB := rotatingToken(t)
	file := cfg.TokenFile
	k := newKeeper(t, cfg, registration("k-evtok"), keeper.WithTTL(900*time.Millisecond))
	l := listen(t, k)
	start(t, k)
	l.next(t, keeper.EventRegistered)
	if n := l.count(keeper.EventTokenRotated); n != 0 {
		t.Errorf("token_rotated at the first registration:%s", l)
	}

	replaceFile(t, file, tokenB)
	e := l.next(t, keeper.EventTokenRotated)
	if e.Agent != cfg.Addresses[0] {
		t.Errorf("token_rotated = %+v, want agent %s", e, cfg.Addresses[0])
	}
	srv.RevokeToken(t, tokenA)
	st := k.Status()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Stop(ctx); err != nil {
		t.Errorf("Stop() = %v", err)
	}
	l.drain()
	all := fmt.Sprintf("%+v %+v %#v", l.seen, st, k.Status())
	for _, tok := range []string{tokenA, tokenB, srv.ManagementToken()} {
		if strings.Contains(all, tok) {
			t.Errorf("a token appears in the events or Status: %s", all)
		}
		for _, d := range digests(tok) {
			if strings.Contains(strings.ToLower(all), d) {
				t.Errorf("a digest of a token appears in the events or Status: %s", all)
			}
		}
	}
}

// digests are forms of tok's SHA-256 (the keeper keeps one) an event
// might leak: hex and base64.
func digests(tok string) []string {
	sum := sha256.Sum256([]byte(tok))
	return []string{hex.EncodeToString(sum[:]), strings.ToLower(base64.StdEncoding.EncodeToString(sum[:]))}
}

// TestNotifyListeners: many listeners each get every event; stop removes
// one, is idempotent and safe concurrently; none get events after Stop.
func TestNotifyListeners(t *testing.T) {
	srv := consultest.NewServer(t)
	k := newKeeper(t, srv.Config(), registration("k-many"), keeper.WithDrainGrace(0))
	var mu sync.Mutex
	got := map[int][]keeper.EventKind{}
	var stops []func()
	for i := range 3 {
		stops = append(stops, k.Notify(func(e keeper.Event) {
			mu.Lock()
			got[i] = append(got[i], e.Kind)
			mu.Unlock()
		}))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); stops[1]() }()
	}
	wg.Wait()
	start(t, k)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stops[0]()
	stops[2]()
	mu.Lock()
	defer mu.Unlock()
	want := []keeper.EventKind{keeper.EventRegistered, keeper.EventDeregistered}
	for _, i := range []int{0, 2} {
		if !slices.Equal(got[i], want) {
			t.Errorf("listener %d got %v, want %v", i, got[i], want)
		}
	}
	if len(got[1]) != 0 {
		t.Errorf("a stopped listener got %v", got[1])
	}
}

// TestEventMaintenanceFoundAtStart: maintenance an operator set on the
// agent before the keeper started is learned before registering, when the
// keeper holds no agent yet; the event still names the agent it was found
// on (it once carried an empty address).
func TestEventMaintenanceFoundAtStart(t *testing.T) {
	srv := consultest.NewServer(t)
	addr := srv.Config().Addresses[0]
	c := client(t, srv.Config())
	ctx := context.Background()
	r := registration("k-ev-mt")
	if err := c.Register(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := c.Maintenance(ctx, r.ID, true, "operator"); err != nil {
		t.Fatal(err)
	}
	k := newKeeper(t, srv.Config(), r)
	l := listen(t, k)
	start(t, k)
	if e := l.next(t, keeper.EventMaintenance); e.Detail != "entered: operator" || e.Agent != addr {
		t.Errorf("maintenance event = %+v, want entered: operator on %s", e, addr)
	}
	if !k.Status().Maintenance {
		t.Errorf("Status().Maintenance = false, want true (kept from the agent)")
	}
}
