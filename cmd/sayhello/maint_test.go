package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// TestMaintAsOperator is maintenance as an operator meets it: two sayhello
// processes on a client agent, `beacon maint ID on` run as a process takes
// one out of the other's /discovery and out of `sayhello -call`'s picks; it
// stays out across a restart of the agent that keeps its data dir (and the
// keepers' heartbeats and re-registrations through it); `beacon maint ID
// off` brings it back.
func TestMaintAsOperator(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	agent := cl.Clients[0]
	c, err := consulhttp.New(agent.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := startSayHello(t, agent.HTTPAddr)
	b := startSayHello(t, agent.HTTPAddr)
	testutil.Eventually(t, deadline, "two instances passing", passingCond(t, c, func(ids []string) bool { return len(ids) == 2 }))

	// discovered is what b's /discovery lists, sorted.
	discovered := func() ([]string, error) {
		code, _, body, err := tryGet(b.url("/discovery?serviceName=SayHello"))
		if err != nil {
			return nil, err
		}
		var insts []instanceJSON
		if err := json.Unmarshal([]byte(body), &insts); err != nil || code != 200 {
			return nil, testutil.Want(false, "/discovery: %d %q", code, body)
		}
		var ids []string
		for _, in := range insts {
			ids = append(ids, in.ID)
		}
		slices.Sort(ids)
		return ids, nil
	}
	discoveredIs := func(want ...string) func() error {
		slices.Sort(want)
		return func() error {
			got, err := discovered()
			if err != nil {
				return err
			}
			return testutil.Want(slices.Equal(got, want), "/discovery lists %q", got)
		}
	}
	// answered counts who answered n calls of `sayhello -call`.
	answered := func(n int) map[string]int {
		out, err := exec.Command(sayhelloCmd.Path(t), "-consul", agent.HTTPAddr, "-call", "SayHello", "-n", strconv.Itoa(n)).Output()
		if err != nil {
			t.Fatalf("sayhello -call: %v\n%s", err, out)
		}
		count := map[string]int{}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			for _, p := range []*proc{a, b} {
				if strings.Contains(l, p.id) {
					count[p.id]++
				}
			}
		}
		return count
	}
	maint := func(args ...string) {
		t.Helper()
		cmd := exec.Command(beaconCmd.Path(t), append([]string{"maint", a.id}, append(args, "-consul", agent.HTTPAddr)...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("beacon maint %s %q: %v\n%s", a.id, args, err, out)
		}
	}
	inMaint := func(on bool) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, _, err := beacon.Maintainer(c).InMaintenance(ctx, a.id)
			if err != nil {
				return err
			}
			return testutil.Want(got == on, "agent: %s in maintenance = %v", a.id, got)
		}
	}

	testutil.Eventually(t, deadline, "both in /discovery", discoveredIs(a.id, b.id))
	maint("on", "-reason", "replacing a disk")
	testutil.Eventually(t, deadline, a.id+" out of /discovery", discoveredIs(b.id))
	if got := answered(10); got[b.id] != 10 {
		t.Errorf("10 calls while %s is in maintenance were answered by %v, want all by %s", a.id, got, b.id)
	}

	// The agent restarts with its data: it restores the maintenance check,
	// and the keepers heartbeat (and may register again) through it.
	agent.Restart(t, true)
	testutil.Eventually(t, deadline, "agent back with the maintenance", inMaint(true))
	testutil.Eventually(t, deadline, "both heartbeating after the restart",
		passingCond(t, c, func(ids []string) bool { return slices.Equal(ids, []string{b.id}) }))
	// A measurement over a span, not a wait for an event: over two TTLs
	// the keepers heartbeat several times, and would
	// register again had the agent lost them: the instance must stay out
	// all along.
	for end := time.Now().Add(2 * keeper.DefaultTTL); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if err := discoveredIs(b.id)(); err != nil {
			t.Fatalf("after the agent's restart: %v", err)
		}
		if err := inMaint(true)(); err != nil {
			t.Fatalf("after the agent's restart: %v", err)
		}
	}
	if got := answered(10); got[b.id] != 10 {
		t.Errorf("10 calls after the restart were answered by %v, want all by %s", got, b.id)
	}

	maint("off")
	testutil.Eventually(t, deadline, a.id+" back in /discovery", discoveredIs(a.id, b.id))
	if got := answered(10); got[a.id] == 0 || got[b.id] == 0 {
		t.Errorf("10 calls after maintenance off were answered by %v, want both", got)
	}
}
