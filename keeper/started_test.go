package keeper_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// TestStartedMeta: WithStartedMeta publishes the keeper's start time under
// beacon.MetaStarted, and keeps the same value through an Update, a
// registration lost and repaired, and an agent restart; the reconcile
// never finds the agent's copy different because of it.
func TestStartedMeta(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	var logs testutil.Buffer
	before := time.Now().Truncate(time.Second)
	k := newKeeper(t, srv.Config(), registration("k-started"), keeper.WithStartedMeta(),
		keeper.WithReconcileInterval(200*time.Millisecond),
		keeper.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	after := time.Now()
	start(t, k)

	started := func() string {
		got := instances(c, true)
		if len(got) != 1 {
			return ""
		}
		return got[0].Meta[beacon.MetaStarted]
	}
	v := started()
	got, ok := beacon.StartedAt(beacon.Instance{Meta: map[string]string{beacon.MetaStarted: v}})
	if !ok || got.Before(before) || got.After(after) {
		t.Fatalf("Meta[%s] = %q, want Unix seconds between %v and %v", beacon.MetaStarted, v, before, after)
	}

	r := registration("k-started")
	r.Meta = map[string]string{"version": "2"} // says nothing of the start
	if err := k.Update(context.Background(), r); err != nil {
		t.Fatalf("Update() = %v", err)
	}
	if s := started(); s != v {
		t.Errorf("after Update Meta[%s] = %q, want %q", beacon.MetaStarted, s, v)
	}
	// A reconcile that finds the agent's copy the same as the keeper's
	// goes on to read the agent's maintenance: an operator's maintenance
	// showing in Status proves one ran (and found no difference, or it
	// would have registered again, which drops the maintenance).
	ctx := context.Background()
	for _, on := range []bool{true, false} {
		if err := c.Maintenance(ctx, "k-started", on, "proves a reconcile"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, deadline, "a reconcile after the Update", func() error {
			return testutil.Want(k.Status().Maintenance == on, "Status().Maintenance = %v", !on)
		})
	}
	if strings.Contains(logs.String(), "differs") {
		t.Errorf("the reconcile found the agent's copy different:\n%s", logs.String())
	}

	if err := c.Deregister(context.Background(), "k-started"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, deadline, "registered again after its loss", func() error {
		return testutil.Want(started() != "", "not registered")
	})
	if s := started(); s != v {
		t.Errorf("after the reconcile registered it again Meta[%s] = %q, want %q", beacon.MetaStarted, s, v)
	}

	srv.Restart(t) // a dev agent: every registration is gone
	testutil.Eventually(t, deadline, "passing again after the agent restart", func() error {
		return testutil.Want(passing(c, "k-started"), "not passing")
	})
	if s := started(); s != v {
		t.Errorf("after the agent restart Meta[%s] = %q, want %q", beacon.MetaStarted, s, v)
	}
}

// TestStartedMetaKeepsGiven: a registration that publishes its own start
// keeps it; without the option nothing is added.
func TestStartedMetaKeepsGiven(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	r := registration("k-given")
	r.Meta = map[string]string{beacon.MetaStarted: "1700000000"}
	start(t, newKeeper(t, srv.Config(), r, keeper.WithStartedMeta()))
	plain := registration("k-plain")
	start(t, newKeeper(t, srv.Config(), plain))
	for _, in := range instances(c, true) {
		want, has := r.Meta[beacon.MetaStarted], true
		if in.ID == "k-plain" {
			want, has = "", false
		}
		if got, ok := in.Meta[beacon.MetaStarted]; got != want || ok != has {
			t.Errorf("%s: Meta[%s] = %q (%v), want %q (%v)", in.ID, beacon.MetaStarted, got, ok, want, has)
		}
	}
	if r.Meta[beacon.MetaStarted] != "1700000000" || len(plain.Meta) != 1 {
		t.Errorf("the keeper changed the caller's meta: %v, %v", r.Meta, plain.Meta)
	}
}
