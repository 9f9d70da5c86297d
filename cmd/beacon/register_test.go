package main

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/status"
)

// TestRegisterSidecar: without a command, register keeps the instance
// registered until it is told to stop, then deregisters.
func TestRegisterSidecar(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	p := beaconStart(t, nil, "register", "-consul", srv.HTTPAddr, "-name", "side", "-port", "9999", "-address", "127.0.0.1",
		"-tags", "a,b", "-meta", "lang=python,team=x", "-zone", "a", "-ttl", "2s")
	testutil.Eventually(t, deadline, "side passing", func() error {
		in, ok := allInstances(t, c, "side")["side-127.0.0.1-9999"]
		return testutil.Want(ok && in.Health == beacon.HealthPassing && in.Meta["lang"] == "python" && in.Meta["zone"] == "a" && strings.Join(in.Tags, ",") == "a,b", "side-127.0.0.1-9999: %+v (registered: %v)", in, ok)
	})
	if code := p.signal(t, syscall.SIGINT); code != 0 {
		t.Errorf("beacon register after SIGINT: exit %d, want 0", code)
	}
	if got := allInstances(t, c, "side"); len(got) != 0 {
		t.Errorf("after beacon register stopped: %v, want no instance", got)
	}
	if !strings.Contains(p.stderr.String(), "deregistered side-127.0.0.1-9999") {
		t.Errorf("stderr %q, want it to say it deregistered", p.stderr.String())
	}
}

// startRegisterCommand runs `beacon register ... -- <test binary as a
// small HTTP server>` and waits until Consul has the server passing.
func startRegisterCommand(t *testing.T, srv *consultest.Server) (p *proc, port int) {
	t.Helper()
	port = freePort(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ps := strconv.Itoa(port)
	p = beaconStart(t, []string{"BEACON_TEST_HELPER=httpserver", "BEACON_TEST_PORT=" + ps},
		"register", "-name", "hello", "-port", ps, "-address", "127.0.0.1", "-id", "hello-1",
		"-http", "http://127.0.0.1:"+ps+"/health", "-consul", srv.HTTPAddr, "--", self)
	c := client(t, srv.Config())
	took := testutil.Eventually(t, deadline, "the command passing in Consul", func() error {
		in, ok := allInstances(t, c, "hello")["hello-1"]
		return testutil.Want(ok && in.Health == beacon.HealthPassing, "hello-1: %+v (registered: %v)", in, ok)
	})
	t.Logf("command started to passing in Consul: %v", took.Round(time.Millisecond))
	// Discoverable: beacon itself finds it.
	r := beaconRun(t, nil, "instances", "hello", "-json", "-consul", srv.HTTPAddr)
	var got []beacon.Instance
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 1 || got[0].Port != port {
		t.Fatalf("beacon instances hello -json = %q, %v; want the command's instance on port %d", r.stdout, err, port)
	}
	return p, port
}

func TestRegisterCommandExits(t *testing.T) {
	srv := consultest.NewServer(t)
	p, port := startRegisterCommand(t, srv)
	resp, err := (&httpClient).Get("http://127.0.0.1:" + strconv.Itoa(port) + "/exit")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code := p.wait(t); code != 0 {
		t.Errorf("beacon register after its command exited 0: exit %d, want 0", code)
	}
	if got := allInstances(t, client(t, srv.Config()), "hello"); len(got) != 0 {
		t.Errorf("after the command exited: %v, want no instance", got)
	}
	if out := p.stdout.String(); !strings.Contains(out, "helper: exiting on request") {
		t.Errorf("command output %q, want its own exit message", out)
	}
}

func TestRegisterCommandSIGTERM(t *testing.T) {
	srv := consultest.NewServer(t)
	p, port := startRegisterCommand(t, srv)
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("beacon register after SIGTERM: exit %d, want 0", code)
	}
	if got := allInstances(t, client(t, srv.Config()), "hello"); len(got) != 0 {
		t.Errorf("after SIGTERM: %v, want no instance", got)
	}
	if out := p.stdout.String(); !strings.Contains(out, "helper: got terminated") {
		t.Errorf("command output %q, want it to have received SIGTERM", out)
	}
	// beacon waited for the command: its port is closed.
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		conn.Close()
		t.Errorf("the command's port %d still answers after beacon exited", port)
	}
	if errOut := p.stderr.String(); !strings.Contains(errOut, "interrupted; deregistered hello-1") {
		t.Errorf("stderr %q: want the deregistration reported", errOut)
	}
}

func TestRegisterCommandFails(t *testing.T) {
	srv := consultest.NewServer(t)
	// The command exits before its port ever answers.
	r := beaconRun(t, nil, "register", "-name", "x", "-port", strconv.Itoa(freePort(t)), "-consul", srv.HTTPAddr, "--", "sh", "-c", "exit 3")
	if r.code != 1 || !strings.Contains(r.stderr, "exit status 3") {
		t.Errorf("register -- sh -c 'exit 3': exit %d, stderr %q; want 1 and the command's status", r.code, r.stderr)
	}
	// No agent: the error names it and the cause.
	r = beaconRun(t, nil, "register", "-name", "x", "-port", "9", "-consul", "127.0.0.1:1", "-start-timeout", "1s")
	if r.code != 1 || !strings.Contains(r.stderr, "127.0.0.1:1") || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("register with no agent: exit %d, stderr %q; want 1 naming the agent and the cause", r.code, r.stderr)
	}
}

// TestRegisterStatusPage: register -status serves the keeper's status
// page while it runs: its JSON has the instance's ID, the agent holding
// it, the last heartbeat accepted and a registered event; beacon status
// reads it; the page goes away when register stops.
func TestRegisterStatusPage(t *testing.T) {
	srv := consultest.NewServer(t)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	const id = "side-127.0.0.1-9998"
	p := beaconStart(t, nil, "register", "-consul", srv.HTTPAddr, "-name", "side", "-port", "9998", "-address", "127.0.0.1",
		"-ttl", "2s", "-status", addr)
	var rep status.Report
	testutil.Eventually(t, deadline, "the status page with the keeper registered", func() error {
		resp, err := httpClient.Get("http://" + addr + "/debug/beacon?format=json")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		rep = status.Report{}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep); err != nil {
			return err
		}
		k := rep.Keeper
		return testutil.Want(k != nil && k.InstanceID == id && k.Agent == srv.HTTPAddr && k.Registered && k.LastHeartbeatOK,
			"keeper %+v, want %s registered through %s", k, id, srv.HTTPAddr)
	})
	registered := false
	for _, e := range rep.Events {
		registered = registered || (e.Kind == status.Registered && e.Instance == id && e.Agent == srv.HTTPAddr)
	}
	if !registered || rep.Keeper.PreviousAgents == nil || len(rep.Agents) != 1 || rep.Agents[0].Address != srv.HTTPAddr {
		t.Errorf("report: events %+v, keeper %+v, agents %+v; want a registered event, no previous agents, the one agent", rep.Events, rep.Keeper, rep.Agents)
	}
	if !strings.Contains(p.stderr.String(), "status page at http://"+addr+"/debug/beacon") {
		t.Errorf("stderr %q does not say where the status page is", p.stderr.String())
	}
	// The CLI reads it, as an operator would over SSH.
	if r := beaconRun(t, nil, "status", addr); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "registered") {
		t.Errorf("beacon status %s: exit %d, stdout %q; want the keeper's row", addr, r.code, r.stdout)
	}

	if code := p.signal(t, syscall.SIGINT); code != 0 {
		t.Errorf("beacon register -status after SIGINT: exit %d, want 0", code)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("the status page %s still answers after register stopped", addr)
	}
}

// TestRegisterStatusRefused: a -status that is not host:port is a usage
// error; one already in use fails before anything is registered.
func TestRegisterStatusRefused(t *testing.T) {
	srv := consultest.NewServer(t)
	r := beaconRun(t, nil, "register", "-consul", srv.HTTPAddr, "-name", "x", "-port", "9", "-status", "nonsense")
	if r.code != 2 || !strings.Contains(r.stderr, "-status") {
		t.Errorf("register -status nonsense: exit %d, stderr %q; want 2 naming -status", r.code, r.stderr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r = beaconRun(t, nil, "register", "-consul", srv.HTTPAddr, "-name", "x", "-port", "9", "-status", ln.Addr().String())
	if r.code != 1 || !strings.Contains(r.stderr, "status page") || !strings.Contains(r.stderr, "address already in use") {
		t.Errorf("register -status on a port in use: exit %d, stderr %q; want 1 and the cause", r.code, r.stderr)
	}
	if got := allInstances(t, client(t, srv.Config()), "x"); len(got) != 0 {
		t.Errorf("after a refused -status: %v registered, want nothing", got)
	}
}
