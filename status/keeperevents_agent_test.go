package status_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/keeper"
	"github.com/beaconsd/beacon/status"
)

func kindCount(r status.Report, k status.EventKind) int {
	n := 0
	for _, e := range r.Events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// TestKeeperTimelineOnRealAgent: a page given a real keeper (with a token
// file) shows the keeper's own events as they happen: registered at
// Start, maintenance once (the sampler, reading every 20 ms, adds no
// copy of its own), token_rotated when the file changes; the keeper row
// says the last heartbeat was accepted and no agent holds an old copy.
// No token is on the page. After Close the page records no more.
func TestKeeperTimelineOnRealAgent(t *testing.T) {
	srv := consultest.NewServer(t, consultest.WithACL())
	rules := `service_prefix "" { policy = "write" } node_prefix "" { policy = "read" }`
	tokA, tokB := srv.MintToken(t, rules), srv.MintToken(t, rules)
	file := filepath.Join(t.TempDir(), "token")
	writeToken := func(tok string) {
		t.Helper()
		tmp := file + ".new"
		if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	writeToken(tokA)
	cfg := srv.Config()
	cfg.TokenFile = file

	k, err := keeper.New(cfg, beacon.Registration{ID: "web-1", Service: "web", Address: "127.0.0.1", Port: 9000}, keeper.WithTTL(900*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_ = k.Stop(ctx)
	})
	c := newCache(t, cfg)
	watch(t, c, "web")
	h := status.New(status.WithCache(c), status.WithKeeper(k, "web-1"), status.WithAgents(cfg.Addresses...), status.WithSampling(20*time.Millisecond, 10))
	url := serve(t, h)
	// Subscribed before Start: the page sees the first registration.
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r := until(t, url, "a registered event", func(r status.Report) bool { return kindCount(r, status.Registered) == 1 })
	// (The sampler may record the cache's 0 → 1 before it: the catalog
	// shows the instance a moment before the keeper reports.)
	for _, e := range r.Events {
		if e.Kind == status.Registered && (e.Instance != "web-1" || !strings.Contains(cfg.Addresses[0], e.Agent) || e.Agent == "" || e.Detail != "started") {
			t.Errorf("registered event = %+v, want web-1 registered on %s, started", e, cfg.Addresses[0])
		}
	}
	if kr := r.Keeper; kr == nil || !kr.LastHeartbeatOK || kr.PreviousAgents == nil || len(kr.PreviousAgents) != 0 {
		t.Errorf("keeper = %+v, want last heartbeat accepted and no previous agents", kr)
	}

	if err := k.Maintenance(ctx, true, "deploying"); err != nil {
		t.Fatal(err)
	}
	until(t, url, "the keeper in maintenance", func(r status.Report) bool { return r.Keeper != nil && r.Keeper.Maintenance })
	writeToken(tokB)
	r = until(t, url, "token_rotated", func(r status.Report) bool { return kindCount(r, status.TokenRotated) == 1 })
	// The rotation is seen at a heartbeat (every 300 ms), after the
	// maintenance: the sampler has read the Status in maintenance many
	// times since, and would have inferred its own entry by now.
	if n := kindCount(r, status.Maintenance); n != 1 {
		t.Errorf("%d maintenance events, want the keeper's one: %+v", n, r.Events)
	}
	for _, e := range r.Events {
		if e.Kind == status.Maintenance && e.Detail != "entered: deploying" {
			t.Errorf("maintenance event %+v, want entered: deploying", e)
		}
	}
	for name, page := range map[string]string{"JSON": fetch(t, url, true), "HTML": fetch(t, url, false)} {
		for _, tok := range []string{tokA, tokB, srv.ManagementToken()} {
			if strings.Contains(page, tok) {
				t.Errorf("the %s page holds a token", name)
			}
		}
		if name == "HTML" && (!strings.Contains(page, "token_rotated") || !strings.Contains(page, "Copies left on")) {
			t.Errorf("the HTML lacks the token_rotated event or the copies row")
		}
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	before := len(h.Report().Events)
	if err := k.Maintenance(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	// Maintenance returns after the keeper's goroutine handled it, events
	// included: nothing more may reach the closed page.
	if after := h.Report().Events; len(after) != before {
		t.Errorf("after Close the page recorded %+v", after[0])
	}
}
