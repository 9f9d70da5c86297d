package keeper_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// agentCheck returns the status agent n holds for check id, "" when it
// holds none; an error while it does not answer.
func agentCheck(n *consultest.Node, id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/v1/agent/checks", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/agent/checks: %s", resp.Status)
	}
	var checks map[string]struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&checks); err != nil {
		return "", err
	}
	return checks[id].Status, nil
}

// TestRestoredCopyComesBackCritical: a keeper without a health function
// registers its heartbeat check passing (a new instance is first seen
// passing), yet the copy left on an agent it moved away from, restored
// from that agent's data dir after the TTL state expired, comes back
// critical, in the agent and in the catalog, never passing beside the
// live copy. Consul 1.14.8 restores API-registered checks critical
// whatever status they were registered with.
func TestRestoredCopyComesBackCritical(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	testutil.StressIfAsked(t, time.Minute)
	client, server := cl.Clients[0], cl.Servers[0]
	reader := client_(t, server)
	const ttl = 2 * time.Second
	const id = "k-restore"
	k := newKeeper(t, cl.Config(client, server), registration(id), keeper.WithTTL(ttl), keeper.WithDrainGrace(0))
	start(t, k)
	if st, err := agentCheck(client, "beacon:"+id); err != nil || st != "passing" {
		t.Fatalf("check on the first agent after Start = %q, %v; want passing", st, err)
	}

	client.Kill()
	testutil.Eventually(t, deadline, "failover", func() error {
		return testutil.Want(k.Status().Failovers == 1, "Status() = %+v", k.Status())
	})
	// The keeper stops, so nobody removes the copy the killed agent holds
	// (it cannot be reached: Stop reports it).
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_ = k.Stop(ctx)
	// The TTL state the killed agent persisted expires a TTL after its last
	// heartbeat; this waits on Consul's clock, which no channel reports.
	time.Sleep(ttl + time.Second)

	client.RestartNoWait(t, true)
	// From the moment the agent answers, for 3 s: the agent holds its copy
	// critical, every time it is asked. The 3 s start when it first
	// answers, not at the restart: a loaded machine's agent can take
	// longer than that to come up.
	var seen, revived int
	end := time.Now().Add(deadline)
	answered := false
	for i := 0; i < 2000 && time.Now().Before(end); i++ {
		st, err := agentCheck(client, "beacon:"+id)
		if err == nil && !answered {
			answered = true
			end = time.Now().Add(3 * time.Second)
		}
		if err == nil && st != "" {
			seen++
			if st != "critical" {
				t.Fatalf("restored copy on the first agent: %s, want critical", st)
			}
		}
		// The catalog can show the copy passing for a moment that has
		// nothing to do with what was registered: the servers kept the
		// check's last status while the node was dead, and serfHealth
		// turning passing on rejoin revives it until the agent syncs. That
		// window is counted, not failed on; discovery offers one copy.
		for _, in := range instances(reader, true) {
			if in.ID == id && in.Health == beacon.HealthPassing {
				revived++
			}
		}
		time.Sleep(20 * time.Millisecond) // sampling for a fixed period
	}
	if seen == 0 {
		t.Fatalf("the restarted agent never showed its copy of %s: nothing was tested", id)
	}
	testutil.Eventually(t, deadline, "the catalog holds the restored copy critical", func() error {
		all := instances(reader, true)
		ok := len(all) == 1 && all[0].ID == id && all[0].Node == client.Name && all[0].Health == beacon.HealthCritical
		return testutil.Want(ok, "catalog: %+v", all)
	})
	t.Logf("restored copy sampled %d times in 3 s: critical every time in the agent; passing in %d catalog samples (serfHealth revive)", seen, revived)
}
