package main

import (
	"encoding/json"
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
