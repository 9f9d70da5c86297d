package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestDemoFederation runs make demo-federation's script as a person would:
// it waits for calls answered in dc1, runs the kill command the script
// prints, sees the calls move to dc2 and come back once the script has
// started dc1's instances again, then interrupts it (SIGINT to its process
// group, as Ctrl-C)
// and checks that it exits promptly with nothing it started left running.
// The datacenters get random loopback addresses of their own, so the
// script's fixed ports collide with nothing.
func TestDemoFederation(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the script test needs Linux: loopback addresses beyond 127.0.0.1 and /proc")
	}
	for _, tool := range []string{"bash", "curl", "ps", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the demo script needs %s: %v", tool, err)
		}
	}
	consul := consultest.Binary(t)
	ip1, ip2 := demoIP(t), demoIP(t)
	for ip2 == ip1 {
		ip2 = demoIP(t)
	}

	d := startDemo(t, "demo-federation.sh", []string{"CONSUL_BIN=" + consul,
		"BEACON_DEMO_DC1_IP=" + ip1, "BEACON_DEMO_DC2_IP=" + ip2,
		"BEACON_DEMO_RESTART=3", "BEACON_DEMO_HOLD_DOWN=1s",
		"BEACON_DEMO_SAYHELLO=" + sayhelloCmd.Path(t)}, ip1, ip2)
	after := func(what string, n int, re string) int { t.Helper(); return d.after(t, what, n, re) }
	out := d.out
	start := time.Now()
	n := after("calls answered in dc1", 0, `(?m)^\d+: \S+ 200 Hello from SayHello-dc1-\d+! \[local\]$`)
	t.Logf("first call answered in dc1 %v after the start", time.Since(start).Round(time.Millisecond))
	kill := regexp.MustCompile(`(?m)^\s+(kill \$\(cat \S+/dc1-\*\.pid\))$`).FindStringSubmatch(out.String())
	if kill == nil {
		t.Fatalf("the demo printed no kill command for dc1's instances")
	}
	if b, err := exec.Command("bash", "-c", kill[1]).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", kill[1], err, b)
	}
	killed := time.Now()
	n = after("calls answered in dc2", n, `(?m)^\d+: \S+ 200 Hello from SayHello-dc2-\d+! \[dc2, failed over\]$`)
	t.Logf("calls moved to dc2 %v after %q", time.Since(killed).Round(time.Millisecond), kill[1])
	after("the demo restarting dc1's instances", n, `SayHello-dc1-\d+ stopped; the demo starts it again`)
	after("calls answered in dc1 again", n, `(?m)^\d+: \S+ 200 Hello from SayHello-dc1-\d+! \[local\]$`)
	t.Logf("calls back in dc1 %v after the kill (restart after 3s, hold-down 1s)", time.Since(killed).Round(time.Millisecond))

	d.interrupt(t)
}

// TestDemo runs make demo's script as a newcomer would: it waits for the
// script to say it is up, then runs what it prints. Every URL answers 200;
// /discovery and Consul's passing list hold the three instances; after
// that /discovery call the status page shows SayHello with three of
// three passing, in HTML and through the printed `beacon status` line
// (the built CLI standing in for its `go run`). Ctrl-C then stops
// everything the script started. The demo gets a random loopback address
// of its own, so its fixed ports collide with nothing.
func TestDemo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the script test needs Linux: loopback addresses beyond 127.0.0.1 and /proc")
	}
	for _, tool := range []string{"bash", "curl", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the demo script needs %s: %v", tool, err)
		}
	}
	ip := demoIP(t)
	d := startDemo(t, "demo.sh", []string{"CONSUL_BIN=" + consultest.Binary(t),
		"BEACON_DEMO_IP=" + ip, "BEACON_DEMO_SAYHELLO=" + sayhelloCmd.Path(t)}, ip)
	d.after(t, "the demo up", 0, `(?m)^Beacon demo is up\.$`)
	printed := d.out.String()

	urls := regexp.MustCompile(`http://[^\s']+`).FindAllString(printed[strings.Index(printed, "Beacon demo is up."):], -1)
	if len(urls) < 7 {
		t.Fatalf("the demo printed %d URLs, want the UI, four curl lines and the status page twice:\n%s", len(urls), printed)
	}
	web := &http.Client{Timeout: 5 * time.Second} // each try bounded; Eventually retries
	get := func(url string) (string, error) {
		resp, err := web.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		return string(b), err
	}
	ids := []string{"SayHello-10086", "SayHello-10087", "SayHello-10088"}
	for _, url := range urls {
		testutil.Eventually(t, deadline, url, func() error {
			body, err := get(url)
			if err != nil {
				return err
			}
			if strings.Contains(url, "serviceName=SayHello") || strings.Contains(url, "/v1/health/service/SayHello") {
				for _, id := range ids {
					if !strings.Contains(body, id) {
						return fmt.Errorf("%s: no %s in %.300s", url, id, body)
					}
				}
			}
			if strings.HasSuffix(url, "/debug/beacon") && !strings.Contains(body, "SayHello") {
				return fmt.Errorf("%s: no SayHello watch on the page yet", url)
			}
			return nil
		})
	}

	line := regexp.MustCompile(`(?m)^\s+go run \./cmd/beacon (status \S+)$`).FindStringSubmatch(printed)
	if line == nil {
		t.Fatalf("the demo printed no beacon status line:\n%s", printed)
	}
	testutil.Eventually(t, deadline, "beacon "+line[1], func() error {
		out, err := exec.Command(beaconCmd.Path(t), strings.Fields(line[1])...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !regexp.MustCompile(`(?m)^SayHello\s.*\b3/3\b`).Match(out) {
			return fmt.Errorf("no SayHello row with 3/3 passing:\n%s", out)
		}
		t.Logf("beacon %s:\n%s", line[1], out)
		return nil
	})
	d.interrupt(t)
}

// demoRun is a demo script running as a terminal's foreground job would.
type demoRun struct {
	cmd    *exec.Cmd
	out    *testutil.Buffer
	done   chan error
	exited bool
	ips    []string
}

// startDemo runs scripts/name with env added, in a process group of its
// own. At cleanup a script still running is stopped, and every process
// naming one of ips (the demo's addresses) is reported and killed.
func startDemo(t *testing.T, name string, env []string, ips ...string) *demoRun {
	t.Helper()
	d := &demoRun{out: &testutil.Buffer{}, done: make(chan error, 1), ips: ips}
	d.cmd = exec.Command("bash", filepath.Join("..", "..", "scripts", name))
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	// A process group of its own, as a terminal's foreground job: Ctrl-C
	// reaches every process of it, the script's background subshells too.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if !d.exited {
			_ = d.cmd.Process.Signal(syscall.SIGTERM) // the script's own cleanup
			select {
			case <-d.done:
			case <-time.After(deadline):
				_ = d.cmd.Process.Kill()
				<-d.done
			}
		}
		// Whatever the script left behind is named by the test's
		// addresses: report it, and kill it by pid.
		for _, p := range procsNaming(ips...) {
			t.Errorf("left running: %s", p.cmdline)
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", d.out.String())
		}
	})
	return d
}

// after waits for a line matching re after the first n bytes of output,
// and returns the output's length then.
func (d *demoRun) after(t *testing.T, what string, n int, re string) int {
	t.Helper()
	rx := regexp.MustCompile(re)
	var end int
	testutil.Eventually(t, 60*time.Second, what, func() error {
		s := d.out.String()
		if loc := rx.FindStringIndex(s[n:]); loc != nil {
			end = n + loc[1]
			return nil
		}
		return fmt.Errorf("no line matching %q yet", re)
	})
	return end
}

// interrupt sends SIGINT to the demo's process group, as Ctrl-C does, and
// checks that the script exits 0 promptly, after its cleanup's last line,
// with nothing it started left running.
func (d *demoRun) interrupt(t *testing.T) {
	t.Helper()
	interrupted := time.Now()
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.exited = true
		took := time.Since(interrupted)
		t.Logf("the demo exited %v after SIGINT: %v", took.Round(time.Millisecond), err)
		if err != nil || !strings.Contains(d.out.String(), "done: nothing left running") {
			t.Errorf("the demo after SIGINT: %v, want exit 0 and its cleanup's last line", err)
		}
		// How soon (a few seconds on an idle machine) is logged above,
		// not asserted; that it exits at all is the deadline's below.
	case <-time.After(deadline):
		t.Fatalf("the demo did not exit within %v of SIGINT", deadline)
	}
	if left := procsNaming(d.ips...); len(left) > 0 {
		t.Errorf("after the demo exited, %d processes naming its addresses still run", len(left))
	}
}

// demoIP returns a random loopback address in 127.1.0.1–127.254.255.254
// that can be bound, as consultest chooses its agents' addresses.
func demoIP(t *testing.T) string {
	t.Helper()
	for range 20 {
		ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
		if l, err := net.Listen("tcp", net.JoinHostPort(ip, "0")); err == nil {
			l.Close()
			return ip
		}
	}
	t.Skip("this machine routes no loopback address but 127.0.0.1")
	return ""
}

type procInfo struct {
	pid     int
	cmdline string
}

// procsNaming lists the processes whose command line names one of the
// addresses (as an argument or the host of one).
func procsNaming(ips ...string) []procInfo {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []procInfo
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		for _, a := range args {
			host := a
			if h, _, err := net.SplitHostPort(a); err == nil {
				host = h
			}
			if slices.Contains(ips, host) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
				found = append(found, procInfo{pid, strings.Join(args, " ")})
				break
			}
		}
	}
	return found
}
