package discovery_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
)

// TestUnreachableAgent: with the agent down, a service never seen fails at
// once with an error naming the agent and what it met, not after the
// caller's deadline with "context deadline exceeded" (B3: sayhello's
// /discovery?serviceName=Never waited 5 s for that). The second service is
// the case that waited: its watch starts after the agent was marked down,
// so its loop waits for the agent to come back without asking.
func TestUnreachableAgent(t *testing.T) {
	const addr = "127.0.0.1:1" // nothing listens on port 1
	c := newCache(t, consul.Config{Addresses: []string{addr}})
	// No deadline on the call: an error that only comes when ctx ends is
	// the bug, so the test's own deadline is a channel's.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, svc := range []string{"first", "Never"} {
		done := make(chan error, 1)
		go func() {
			_, err := c.Instances(ctx, svc)
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(deadline):
			cancel()
			<-done
			t.Fatalf("Instances(%q) with the agent down: no answer within %v", svc, deadline)
		}
		var ue *discovery.UnreachableError
		if !errors.As(err, &ue) || !errors.Is(err, beacon.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Instances(%q) = %v, want an *UnreachableError matching beacon.ErrUnavailable", svc, err)
		}
		if !slices.Equal(ue.Agents, []string{addr}) || ue.Err == nil || ue.Service != svc {
			t.Errorf("Instances(%q): UnreachableError{Service: %q, Agents: %q, Err: %v}, want %q, [%q] and the last error", svc, ue.Service, ue.Agents, ue.Err, svc, addr)
		}
		if msg := err.Error(); !strings.Contains(msg, "cannot reach the Consul agent at "+addr) || !strings.Contains(msg, "refused") {
			t.Errorf("Instances(%q) error %q: want it to name the agent and the last error (connection refused)", svc, msg)
		}
		t.Logf("Instances(%q) = %v", svc, err)
	}
	if _, err := c.Snapshot(ctx, "Never"); !errors.Is(err, beacon.ErrUnavailable) {
		t.Errorf("Snapshot(\"Never\") = %v, want beacon.ErrUnavailable", err)
	}
}

// TestWatchStartedWhileAllDownPublishesItsError: a watch started after
// every agent was marked down publishes an error snapshot of its own, so
// consumers that follow snapshots rather than call Wait (the gRPC resolver)
// learn of it. Its loop used to wait in silence for an agent to come back.
func TestWatchStartedWhileAllDownPublishesItsError(t *testing.T) {
	c := newCache(t, consul.Config{Addresses: []string{"127.0.0.1:1"}}) // nothing listens on port 1
	first, err := c.Watch(beacon.Query{Service: "first"})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := first.Wait(ctx); !errors.Is(err, beacon.ErrUnavailable) {
		t.Fatalf("first.Wait() = %v, want ErrUnavailable", err) // the agent is marked down now
	}
	second, err := c.Watch(beacon.Query{Service: "second"})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	// The error may be published before the Watcher subscribed: Changed
	// must still say so (newWatcher).
	s := next(t, second)
	if s == nil || s.Source != discovery.SourceNone || !errors.Is(s.Err, beacon.ErrUnavailable) {
		t.Fatalf("second watch's first snapshot = %+v, want SourceNone with an error matching ErrUnavailable", s)
	}
	var ue *discovery.UnreachableError
	if !errors.As(s.Err, &ue) || ue.Service != "second" {
		t.Errorf("second watch's error = %v, want an *UnreachableError for %q", s.Err, "second")
	}
}
