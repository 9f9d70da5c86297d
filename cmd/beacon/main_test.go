package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/internal/testutil"
)

// deadline bounds every wait: generous for a loaded 2-core machine.
const deadline = 30 * time.Second

// beaconCmd is the command under test, built once per test run.
var beaconCmd = &testutil.Binary{Name: "beacon"}

func TestMain(m *testing.M) {
	// The test binary doubles as the small HTTP server that register runs.
	if os.Getenv("BEACON_TEST_HELPER") == "httpserver" {
		os.Exit(helperServer())
	}
	code := m.Run()
	beaconCmd.Remove()
	sayhelloCmd.Remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// helperServer answers /health and /exit on 127.0.0.1:$BEACON_TEST_PORT
// after a short start-up delay (so register must wait for the port), and
// says which signal stopped it.
func helperServer() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	time.Sleep(200 * time.Millisecond) // a slow start, for register to wait out
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("BEACON_TEST_PORT"))
	if err != nil {
		fmt.Println("helper:", err)
		return 3
	}
	exit := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "bye")
		close(exit)
	})
	go http.Serve(ln, mux)
	fmt.Println("helper: listening on", ln.Addr())
	select {
	case s := <-sigs:
		fmt.Println("helper: got", s)
	case <-exit:
		fmt.Println("helper: exiting on request")
	}
	return 0
}

// env is the environment for beacon processes: the test's own, without
// any CONSUL_* setting that could point them elsewhere, plus extra.
func env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CONSUL_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// result is a finished beacon process.
type result struct {
	stdout, stderr string
	code           int
}

// beaconRun runs beacon to completion.
func beaconRun(t *testing.T, envv []string, args ...string) result {
	t.Helper()
	// Build first (a race build can take minutes on a busy machine): the
	// deadline is for the run alone.
	path := beaconCmd.Path(t)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env(envv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("beacon %q: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("beacon %q did not finish within %v", args, deadline)
	}
	t.Logf("beacon %s: exit %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// proc is a beacon process left running.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *testutil.Buffer
	done           chan error
}

// beaconStart starts beacon and kills it at cleanup if it still runs.
func beaconStart(t *testing.T, envv []string, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: &testutil.Buffer{}, stderr: &testutil.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(beaconCmd.Path(t), args...)
	p.cmd.Env = env(envv...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Logf("beacon %s\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), p.stdout.String(), p.stderr.String())
	})
	return p
}

// signal sends sig and waits for the exit code.
func (p *proc) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal: %v", err)
	}
	return p.wait(t)
}

// exited reports whether the process has ended (a wait can stop early).
func (p *proc) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for cleanup
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("beacon: %v", err)
		}
		return 0
	case <-time.After(deadline):
		t.Fatalf("beacon did not exit within %v", deadline)
		return -1
	}
}

func client(t *testing.T, cfg consul.Config) *consulhttp.Client {
	t.Helper()
	c, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func register(t *testing.T, c *consulhttp.Client, r beacon.Registration) {
	t.Helper()
	if err := c.Register(ctxT(t), r); err != nil {
		t.Fatalf("Register(%q) = %v", r.ID, err)
	}
}

// allInstances is every instance of service as Consul holds it, by ID.
func allInstances(t *testing.T, c *consulhttp.Client, service string) map[string]beacon.Instance {
	t.Helper()
	insts, _, err := c.Instances(ctxT(t), beacon.Query{Service: service, IncludeUnhealthy: true})
	if err != nil {
		t.Fatalf("Instances(%q) = %v", service, err)
	}
	out := map[string]beacon.Instance{}
	for _, in := range insts {
		out[in.ID] = in
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func ttlCheck(status beacon.Health) []beacon.Check {
	return []beacon.Check{{TTL: time.Hour, InitialStatus: status}}
}

// httpClient talks to test helpers on loopback, never through a proxy.
var httpClient = http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
