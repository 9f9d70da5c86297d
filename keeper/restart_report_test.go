package keeper_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// reportEnv asks for TestReportRestartToPassing: it restarts a client
// agent dozens of times (minutes), so it is not part of go test ./...
//
//	BEACON_RESTART_REPORT=1 go test -race -run TestReportRestartToPassing -v ./keeper
//
// BEACON_RESTART_SAMPLES changes the number of samples (default 20).
const reportEnv = "BEACON_RESTART_REPORT"

// TestReportRestartToPassing reports how soon a kept instance is passing
// again after its client agent restarts with its data dir wiped (its
// registration lost), in a cluster of one server and one client; the
// keeper is given only the client agent, so what is measured is repair,
// not failover. Two kinds of restart, idle and beside testutil.CPUHog:
//
//   - down: the agent is killed and restarted once the servers have
//     marked its node failed (the instance no longer passes in the
//     catalog). Reported: from the agent first answering HTTP, and from it
//     first knowing a leader, to the instance passing in the catalog.
//   - quick: killed and restarted at once, at a random point between two
//     heartbeats, as a supervisor restarts a crashed agent. The catalog
//     may never show the loss, so the end is the agent itself holding the
//     instance with its checks passing (GET /v1/agent/health/service/id).
//
// Each figure is printed as min / median / max in ms. A third kind,
// failover (half the samples), gives the keeper the server agent too,
// kills the client until the keeper has moved to the server, and restarts
// the client with its data (it comes back holding its old copy): it
// reports how long, from the client answering, the catalog holds two
// copies, and two passing ones. Its +catalog variant also removes the old
// node's copy from the catalog (PUT /v1/catalog/deregister through the
// server) the moment the keeper has moved: what a keeper could do through
// the agent it moved to, measured before building it.
func TestReportRestartToPassing(t *testing.T) {
	if os.Getenv(reportEnv) == "" {
		t.Skipf("a report, minutes long: set %s=1 to run it", reportEnv)
	}
	samples := 20
	if n, err := strconv.Atoi(os.Getenv("BEACON_RESTART_SAMPLES")); err == nil && n > 0 {
		samples = n
	}
	for _, hog := range []bool{false, true} {
		for _, quick := range []bool{false, true} {
			name := map[bool]string{false: "idle", true: "cpuhog"}[hog] + "/" + map[bool]string{false: "down", true: "quick"}[quick]
			t.Run(name, func(t *testing.T) {
				if hog {
					testutil.CPUHog(t, 10*time.Minute)
				}
				reportRestarts(t, samples, quick)
			})
		}
		for _, catalog := range []bool{false, true} {
			name := map[bool]string{false: "idle", true: "cpuhog"}[hog] + map[bool]string{false: "/failover", true: "/failover+catalog"}[catalog]
			t.Run(name, func(t *testing.T) {
				if hog {
					testutil.CPUHog(t, 10*time.Minute)
				}
				reportFailovers(t, max(1, samples/2), catalog)
			})
		}
	}
}

func reportFailovers(t *testing.T, samples int, catalog bool) {
	cl := consultest.NewCluster(t, 1, 1)
	server, agent := cl.Servers[0], cl.Clients[0]
	reader := client(t, server.Config())
	k := newKeeper(t, cl.Config(agent, server), registration("k-report"), keeper.WithDrainGrace(0))
	start(t, k)
	hc := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	answers := func() bool {
		resp, err := hc.Get(agent.URL() + "/v1/agent/self")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	copies := func() (all, passing int) {
		for _, in := range instances(reader, true) {
			if in.ID == "k-report" {
				all++
				if in.Health == beacon.HealthPassing {
					passing++
				}
			}
		}
		return all, passing
	}
	var twoCopies, twoPassing []time.Duration
	sawTwoPassing := 0
	for i := range samples {
		// Back on the client (the preferred agent) for each sample: a
		// keeper stays where it moved, so each sample after the first
		// stops it and starts a fresh one, which registers on the client.
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			_ = k.Stop(ctx)
			cancel()
			k = newKeeper(t, cl.Config(agent, server), registration("k-report"), keeper.WithDrainGrace(0))
			start(t, k)
		}
		testutil.Eventually(t, deadline, "one passing copy on the client", func() error {
			all, passing := copies()
			return testutil.Want(all == 1 && passing == 1 && k.Status().Agent == agent.HTTPAddr, "copies %d, passing %d, %+v", all, passing, k.Status())
		})
		failovers := k.Status().Failovers
		agent.Kill()
		testutil.Eventually(t, deadline, "moved to the server", func() error {
			return testutil.Want(k.Status().Failovers > failovers, "Status() = %+v", k.Status())
		})
		if catalog {
			body := strings.NewReader(fmt.Sprintf(`{"Node":%q,"ServiceID":"k-report"}`, agent.Name))
			req, err := http.NewRequest(http.MethodPut, server.URL()+"/v1/catalog/deregister", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("catalog deregister: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("catalog deregister: %s", resp.Status)
			}
		}
		restarted := make(chan struct{})
		go func() { defer close(restarted); agent.RestartNoWait(t, true) }()
		var answered, lastTwo, lastTwoPassing time.Time
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		for ctx.Err() == nil {
			if answered.IsZero() && answers() {
				answered = time.Now()
			}
			all, passing := copies()
			now := time.Now()
			if all > 1 {
				lastTwo = now
			}
			if passing > 1 {
				lastTwoPassing = now
			}
			if !answered.IsZero() && all == 1 && now.Sub(answered) > 3*time.Second {
				break // one copy, and long enough after the restart to trust it
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-restarted
		if answered.IsZero() {
			t.Fatalf("sample %d: the client never answered", i)
		}
		twoCopies = append(twoCopies, max(0, lastTwo.Sub(answered)))
		if !lastTwoPassing.IsZero() {
			sawTwoPassing++
			twoPassing = append(twoPassing, max(0, lastTwoPassing.Sub(answered)))
		}
	}
	t.Logf("%d failovers and returns; load average at the end: %s", samples, loadavg())
	t.Logf("client answering HTTP → last time two copies were in the catalog: %s", spread(twoCopies))
	t.Logf("two passing copies seen in %d of %d samples; client answering → last seen: %s", sawTwoPassing, samples, spread(twoPassing))
}

func reportRestarts(t *testing.T, samples int, quick bool) {
	cl := consultest.NewCluster(t, 1, 1)
	server, agent := cl.Servers[0], cl.Clients[0]
	reader := client(t, server.Config())
	k := newKeeper(t, agent.Config(), registration("k-report"), keeper.WithDrainGrace(0))
	start(t, k)
	hc := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		resp, err := hc.Get(agent.URL() + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		var b [256]byte
		n, _ := resp.Body.Read(b[:])
		return resp.StatusCode, string(b[:n])
	}
	passingOnAgent := func() bool {
		for _, in := range instances(reader, false) {
			if in.ID == "k-report" && in.Node == agent.Name {
				return true
			}
		}
		return false
	}
	healthPath := "/v1/agent/health/service/id/" + url.PathEscape("k-report")

	var fromAnswer, fromLeader []time.Duration
	for i := range samples {
		testutil.Eventually(t, deadline, "passing before the restart", func() error {
			return testutil.Want(passingOnAgent(), "k-report not passing on %s", agent.Name)
		})
		if quick {
			// A random phase against the heartbeat ticks.
			time.Sleep(rand.N(keeper.DefaultTTL / 3))
		}
		agent.Kill()
		if !quick {
			testutil.Eventually(t, deadline, "node failed", func() error { return testutil.Want(!passingOnAgent(), "still passing") })
		}
		type marks struct{ answer, leader, done time.Time }
		got := make(chan marks, 1)
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		go func() {
			var m marks
			defer func() { got <- m }()
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for ctx.Err() == nil {
				if m.answer.IsZero() {
					if code, _ := get("/v1/agent/self"); code == http.StatusOK {
						m.answer = time.Now()
					}
				}
				if !m.answer.IsZero() && m.leader.IsZero() {
					if code, body := get("/v1/status/leader"); code == http.StatusOK && len(body) > 2 { // `""` is none
						m.leader = time.Now()
					}
				}
				if !m.answer.IsZero() {
					var done bool
					if quick {
						code, _ := get(healthPath)
						done = code == http.StatusOK
					} else {
						done = passingOnAgent()
					}
					if done {
						m.done = time.Now()
						return
					}
				}
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		}()
		agent.RestartNoWait(t, false)
		m := <-got
		cancel()
		if m.done.IsZero() {
			t.Fatalf("sample %d: instance not passing again within %v (answered %v, leader %v)", i, deadline, !m.answer.IsZero(), !m.leader.IsZero())
		}
		fromAnswer = append(fromAnswer, m.done.Sub(m.answer))
		if !m.leader.IsZero() {
			fromLeader = append(fromLeader, max(0, m.done.Sub(m.leader)))
		}
	}
	st := k.Status()
	t.Logf("%d samples (keeper: TTL %v, failovers %d); load average at the end: %s", samples, keeper.DefaultTTL, st.Failovers, loadavg())
	end := "passing in the catalog"
	if quick {
		end = "passing on the agent"
	}
	t.Logf("agent answering HTTP → %s: %s", end, spread(fromAnswer))
	t.Logf("agent knowing a leader → %s: %s (%d samples where the leader was seen first)", end, spread(fromLeader), len(fromLeader))
	if got := instances(reader, true); len(got) != 1 {
		t.Errorf("after the restarts Instances(all) = %+v, want one", got)
	}
}

// spread is "min / median / max ms".
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64) }
	return fmt.Sprintf("min %s / median %s / max %s ms", ms(ds[0]), ms(ds[len(ds)/2]), ms(ds[len(ds)-1]))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return string(b[:min(len(b), 14)])
}
