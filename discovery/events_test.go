package discovery_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// eventLog collects a cache's events on a channel: Notify's listener must
// not block, so one that overflows the buffer is counted, not waited for.
type eventLog struct {
	ch      chan discovery.Event
	dropped chan struct{}
}

func listen(t *testing.T, c *discovery.Cache) (*eventLog, func()) {
	l := &eventLog{ch: make(chan discovery.Event, 256), dropped: make(chan struct{}, 1)}
	stop := c.Notify(func(e discovery.Event) {
		select {
		case l.ch <- e:
		default:
			select {
			case l.dropped <- struct{}{}:
			default:
			}
		}
	})
	t.Cleanup(stop)
	return l, stop
}

// wait returns the first event matching want, failing the test after the
// deadline; the events passed over are returned too, for messages.
func (l *eventLog) wait(t *testing.T, what string, want func(discovery.Event) bool) discovery.Event {
	t.Helper()
	end := time.After(deadline)
	var seen []string
	for {
		select {
		case e := <-l.ch:
			if want(e) {
				return e
			}
			seen = append(seen, fmt.Sprintf("%s %s %s %q", e.Kind, e.Service, e.Instance, e.Detail))
		case <-end:
			t.Fatalf("%s: no such event within %v; saw %v", what, deadline, seen)
			return discovery.Event{}
		}
	}
}

// TestNotifyInstanceEvents: on a real agent, a listener hears each
// instance added, changing health and removed, with the service, the
// instance's ID, its address and the health change; and nothing after it
// stops listening.
func TestNotifyInstanceEvents(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "ev-1", "ev", beacon.HealthPassing)
	c := newCache(t, srv.Config())
	events, stop := listen(t, c)
	w, err := c.Watch(beacon.Query{Service: "ev", IncludeUnhealthy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	kindOf := func(k discovery.EventKind, id string) func(discovery.Event) bool {
		return func(e discovery.Event) bool { return e.Kind == k && e.Service == "ev" && e.Instance == id }
	}
	e := events.wait(t, "ev-1 added", kindOf(discovery.EventInstanceAdded, "ev-1"))
	if want := fmt.Sprintf("127.0.0.1:%d, passing", testPort("ev-1")); e.Detail != want || e.Time.IsZero() {
		t.Errorf("added event = %+v; want detail %q and a time", e, want)
	}
	register(t, r, "ev-2", "ev", beacon.HealthPassing)
	events.wait(t, "ev-2 added", kindOf(discovery.EventInstanceAdded, "ev-2"))
	setHealth(t, r, "ev-2", beacon.HealthCritical)
	if e := events.wait(t, "ev-2 critical", kindOf(discovery.EventHealthChanged, "ev-2")); e.Detail != "passing → critical" {
		t.Errorf("health event detail = %q, want %q", e.Detail, "passing → critical")
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := r.Deregister(ctx, "ev-1"); err != nil {
		t.Fatal(err)
	}
	events.wait(t, "ev-1 removed", kindOf(discovery.EventInstanceRemoved, "ev-1"))

	// Events from before stop, still unread, are not events after it.
	for n := len(events.ch); n > 0; n-- {
		<-events.ch
	}
	stop()
	stop() // twice is allowed
	register(t, r, "ev-3", "ev", beacon.HealthPassing)
	until(t, w, "ev-3 published", func(s *discovery.Snapshot) bool { return len(s.Instances) == 2 })
	select {
	case e := <-events.ch:
		t.Errorf("event %+v after stop", e)
	default:
	}
	select {
	case <-events.dropped:
		t.Error("the listener's buffer overflowed")
	default:
	}
}

// TestNotifyAgentDownAndUp: a paused agent is marked down by the watchdog,
// and the listener hears it with the agent's address and the verdict; when
// it answers again, the listener hears it is up. Another listener reads
// the cache's Agents and Stats as each event comes.
func TestNotifyAgentDownAndUp(t *testing.T) {
	srv := consultest.NewServer(t)
	register(t, registry(t, srv.Config()), "ag-1", "ag", beacon.HealthPassing)
	c := newCache(t, srv.Config())
	events, _ := listen(t, c)
	// A listener may read the cache: Notify's doc promises it, and a
	// deadlock here would hang the agent's state change.
	t.Cleanup(c.Notify(func(discovery.Event) { _, _ = c.Agents(), c.Stats() }))
	w, _ := waitFirst(t, c, "ag")
	until(t, w, "ag-1 seen", func(s *discovery.Snapshot) bool { return len(s.Instances) == 1 })

	srv.Pause()
	t.Cleanup(srv.Resume) // before the server's own cleanup kills it
	down := events.wait(t, "agent down", func(e discovery.Event) bool { return e.Kind == discovery.EventAgentDown })
	if down.Agent != srv.HTTPAddr || !strings.Contains(down.Detail, "unanswered") && !strings.Contains(down.Detail, "deadline") {
		t.Errorf("down event = %+v; want agent %s and the watchdog's verdict", down, srv.HTTPAddr)
	}
	srv.Resume()
	if up := events.wait(t, "agent up", func(e discovery.Event) bool { return e.Kind == discovery.EventAgentUp }); up.Agent != srv.HTTPAddr {
		t.Errorf("up event = %+v; want agent %s", up, srv.HTTPAddr)
	}
}

// TestNotifyTokenRotated: a new token in the token file is reported, once,
// without the token.
func TestNotifyTokenRotated(t *testing.T) {
	srv := consultest.NewServer(t)
	const first, second = "4b1d5b32-0d6c-4c1e-9a53-2a9c1c0e7f11", "9e0f6a27-5b8d-4f3a-8c21-7d4e2b6a1c93"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := srv.Config()
	cfg.TokenFile = file
	c := newCache(t, cfg)
	events, _ := listen(t, c)
	if err := os.WriteFile(file, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	e := events.wait(t, "the rotation", func(e discovery.Event) bool { return e.Kind == discovery.EventTokenRotated })
	if strings.Contains(e.Detail, first) || strings.Contains(e.Detail, second) || e.Time.IsZero() {
		t.Errorf("rotation event = %+v; want a time and no token", e)
	}
	w, _ := waitFirst(t, c, "any") // requests still go out with the new token (ACLs are off here)
	until(t, w, "an answer", func(s *discovery.Snapshot) bool { return s.Err == nil })
	select {
	case e := <-events.ch:
		if e.Kind == discovery.EventTokenRotated {
			t.Errorf("a second rotation event %+v for one rotation", e)
		}
	default:
	}
}
