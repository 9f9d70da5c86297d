package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestFailoverAcrossDatacenters: on a real federation (dc1, dc2, a server
// and a client agent each), SayHello runs in both. Through dc1's agent,
// /discovery?serviceName=SayHello&dc=dc2 reads dc2's instance, and
// sayhello -call -failover dc2 calls dc1's. With dc1's instance stopped,
// /discovery (both backends) and the calls move to dc2, saying so; with an
// instance back in dc1 they come back after the hold-down. Interrupted,
// the caller stops at once.
func TestFailoverAcrossDatacenters(t *testing.T) {
	f := consultest.NewFederation(t, consultest.FederationSpec{Datacenters: []consultest.DatacenterSpec{
		{Name: "dc1", Servers: 1, Clients: 1},
		{Name: "dc2", Servers: 1, Clients: 1},
	}})
	agent1, agent2 := f.DC("dc1").Clients[0].HTTPAddr, f.DC("dc2").Clients[0].HTTPAddr
	c1, err := consulhttp.New(f.DC("dc1").Config())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := consulhttp.New(f.DC("dc2").Config())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()

	a := startSayHello(t, agent1)
	b := startSayHello(t, agent2)
	testutil.Eventually(t, deadline, "SayHello passing in dc1", passingCond(t, c1, func(ids []string) bool { return len(ids) == 1 }))
	testutil.Eventually(t, deadline, "SayHello passing in dc2", passingCond(t, c2, func(ids []string) bool { return len(ids) == 1 }))
	policy := []string{"-failover", "dc2", "-failover-hold-down", "1s"}
	fronts := map[string]*proc{}
	for _, backend := range testBackends {
		fronts[backend] = startSayHello(t, agent1, append([]string{"-name", "Front", "-backend", backend}, policy...)...)
	}

	// discovery asks a front's /discovery and returns the instances' IDs
	// and where the answer says they come from.
	type answer struct {
		ids        []string
		dc         string // the instances' Datacenter, or "" (local)
		failedOver bool
		header     string // X-Beacon-Datacenter, X-Beacon-Failed-Over
	}
	discovery := func(p *proc, query string) (answer, error) {
		code, h, body, err := tryGet(p.url("/discovery?" + query))
		if err != nil || code != 200 {
			return answer{}, fmt.Errorf("GET /discovery?%s = %d %q, %v", query, code, body, err)
		}
		var insts []instanceJSON
		if err := json.Unmarshal([]byte(body), &insts); err != nil {
			return answer{}, fmt.Errorf("GET /discovery?%s body %q: %v", query, body, err)
		}
		a := answer{header: h.Get("X-Beacon-Datacenter") + "," + h.Get("X-Beacon-Failed-Over")}
		for i, in := range insts {
			a.ids = append(a.ids, in.ID)
			if i > 0 && (in.Datacenter != a.dc || in.FailedOver != a.failedOver) {
				return answer{}, fmt.Errorf("GET /discovery?%s: instances from different places: %q", query, body)
			}
			a.dc, a.failedOver = in.Datacenter, in.FailedOver
		}
		return a, nil
	}
	expect := func(what, query string, want answer) {
		t.Helper()
		for backend, p := range fronts {
			testutil.Eventually(t, deadline, what+" ("+backend+")", func() error {
				got, err := discovery(p, query)
				if err != nil {
					return err
				}
				return testutil.Want(fmt.Sprint(got) == fmt.Sprint(want), "GET /discovery?%s = %+v, want %+v", query, got, want)
			})
		}
	}
	expect("dc1's instance, local", "serviceName=SayHello", answer{ids: []string{a.id}, header: ","})
	expect("dc2's instance with dc=dc2", "serviceName=SayHello&dc=dc2", answer{ids: []string{b.id}, dc: "dc2", header: "dc2,"})
	expect("dc1's instance with dc=dc1", "serviceName=SayHello&dc=dc1", answer{ids: []string{a.id}, dc: "dc1", header: "dc1,"})
	expect("nothing in dc2 of a service only in dc1", "serviceName=Front&dc=dc2", answer{header: "dc2,"})
	for backend, p := range fronts {
		if code, _, body := get(t, p.url("/discovery?serviceName=SayHello&dc=nowhere")); code != 502 {
			t.Errorf("GET /discovery?serviceName=SayHello&dc=nowhere (%s) = %d %q, want 502", backend, code, body)
		}
		if code, _, body := get(t, p.url("/discovery?serviceName=SayHello&dc=dc%202")); code != 400 {
			t.Errorf("GET /discovery?serviceName=SayHello&dc=dc%%202 (%s) = %d %q, want 400", backend, code, body)
		}
	}

	// The caller: a call every 100 ms, printing who answered from where.
	out := &testutil.Buffer{}
	caller := exec.Command(sayhelloCmd.Path(t), append([]string{"-consul", agent1, "-call", "SayHello", "-n", "100000", "-interval", "100ms", "-backend", "kit"}, policy...)...)
	caller.Stdout = out
	stderr := &testutil.Buffer{}
	caller.Stderr = stderr
	if err := caller.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- caller.Wait() }()
	t.Cleanup(func() {
		_ = caller.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("caller output:\n%s\ncaller log:\n%s", out.String(), stderr.String())
		}
	})
	// seen waits for a call answered by instance id, the line ending as
	// suffix says, after the first n lines of output.
	seen := func(what string, n int, id, suffix string) int {
		t.Helper()
		re := regexp.MustCompile(`(?m)^\d+: \S+ 200 Hello from ` + regexp.QuoteMeta(id) + `! ` + regexp.QuoteMeta(suffix) + `$`)
		testutil.Eventually(t, deadline, what, func() error {
			lines := strings.Split(out.String(), "\n")
			return testutil.Want(len(lines) > n && re.MatchString(strings.Join(lines[n:], "\n")), "no call answered by %s %s after line %d", id, suffix, n)
		})
		return len(strings.Split(out.String(), "\n"))
	}
	n := seen("calls answered in dc1", 0, a.id, "[local]")

	// dc1's instance stops (drains, deregisters): calls move to dc2.
	stopped := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n = seen("calls answered in dc2 after dc1's instance stopped", n, b.id, "[dc2, failed over]")
	t.Logf("calls failed over %v after dc1's instance was sent SIGTERM", time.Since(stopped).Round(time.Millisecond))
	expect("dc2's instance, failed over", "serviceName=SayHello", answer{ids: []string{b.id}, dc: "dc2", failedOver: true, header: "dc2,true"})
	if err := a.wait(t); err != nil {
		t.Errorf("dc1's instance after SIGTERM: %v, want exit 0", err)
	}

	// An instance back in dc1: calls come back after the hold-down.
	back := startSayHello(t, agent1)
	returned := time.Now()
	seen("calls answered in dc1 again", n, back.id, "[local]")
	t.Logf("calls came back %v after the new dc1 instance started (hold-down 1s)", time.Since(returned).Round(time.Millisecond))
	expect("dc1's new instance, local again", "serviceName=SayHello", answer{ids: []string{back.id}, header: ","})

	// Interrupted, the caller stops calling and exits; with no failed
	// call, with 0.
	interrupted := time.Now()
	if err := caller.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
		done <- err
	case <-time.After(deadline):
		t.Fatalf("sayhello -call did not exit within %v of SIGINT", deadline)
	}
	failed := strings.Count(out.String(), ": error: ")
	t.Logf("caller: %d lines, %d failed calls; exited %v after SIGINT with %v",
		strings.Count(out.String(), "\n"), failed, time.Since(interrupted).Round(time.Millisecond), err)
	var ee *exec.ExitError
	if failed == 0 && err != nil || failed > 0 && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Errorf("sayhello -call interrupted after %d failed calls: %v, want exit 0 without failures, 1 with", failed, err)
	}
}
