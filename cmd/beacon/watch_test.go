package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// lineTime finds the first output line matching re and returns the time
// stamped on it.
func lineTime(t *testing.T, out string, re *regexp.Regexp) (time.Time, bool) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if re.MatchString(l) {
			ts, _, _ := strings.Cut(l, " ")
			at, err := time.Parse(tsFormat, ts)
			if err != nil {
				t.Fatalf("line %q: timestamp: %v", l, err)
			}
			return at, true
		}
	}
	return time.Time{}, false
}

// TestWatch: changes made while beacon watch runs appear with timestamps,
// within a second (asserted against a generous deadline; the measured
// delay is logged), and an agent that goes away is reported with the age
// of the data still shown.
func TestWatch(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	register(t, c, beacon.Registration{ID: "web-1", Service: "web", Address: "127.0.0.1", Port: 8080, Checks: ttlCheck(beacon.HealthPassing)})

	p := beaconStart(t, nil, "watch", "web", "-consul", srv.HTTPAddr)
	testutil.Eventually(t, deadline, "the first answer", func() error {
		return testutil.Want(strings.Contains(p.stdout.String(), "present web-1 127.0.0.1:8080 passing"), "output %q", p.stdout.String())
	})

	// Each change, and the line that must report it.
	r2 := beacon.Registration{ID: "web-2", Service: "web", Address: "127.0.0.1", Port: 8081, Meta: map[string]string{"version": "1"}, Checks: ttlCheck(beacon.HealthPassing)}
	steps := []struct {
		name   string
		change func()
		line   string
	}{
		{"add", func() { register(t, c, r2) }, `added web-2 127\.0\.0\.1:8081 passing node=\S+ meta=version=1$`},
		{"health", func() {
			if err := c.UpdateTTL(ctxT(t), r2.CheckIDs()[0], beacon.HealthCritical, "down"); err != nil {
				t.Fatal(err)
			}
		}, `changed web-2 health passing -> critical$`},
		{"meta", func() {
			r := r2
			r.Meta = map[string]string{"version": "2"}
			r.Checks = ttlCheck(beacon.HealthCritical)
			register(t, c, r)
		}, `changed web-2 meta version=1 -> version=2$`},
		{"remove", func() {
			if err := c.Deregister(ctxT(t), "web-2"); err != nil {
				t.Fatal(err)
			}
		}, `removed web-2 node=`},
	}
	for _, s := range steps {
		re := regexp.MustCompile(`^\S+ ` + s.line)
		start := time.Now()
		s.change()
		testutil.Eventually(t, deadline, s.name+" shown", func() error {
			_, ok := lineTime(t, p.stdout.String(), re)
			return testutil.Want(ok, "output %q", p.stdout.String())
		})
		seen := time.Since(start)
		at, _ := lineTime(t, p.stdout.String(), re)
		t.Logf("%s: printed %v after the change was sent (stamped +%v)", s.name, seen.Round(time.Millisecond), at.Sub(start).Round(time.Millisecond))
		if seen > 10*time.Second {
			t.Errorf("%s: shown after %v, want well within a second", s.name, seen)
		}
	}

	// The agent goes away: beacon keeps the last data and says how old it is.
	srv.Stop()
	// Refused or reset, as the agent's sockets close: either is an outage.
	outage := regexp.MustCompile(`consul unreachable \(.*(connection refused|connection reset|EOF).*\); showing data from [0-9.]+m?s ago`)
	testutil.Eventually(t, deadline, "the outage reported", func() error {
		return testutil.Want(outage.MatchString(p.stdout.String()), "output %q", p.stdout.String())
	})
	if code := p.signal(t, syscall.SIGINT); code != 0 {
		t.Errorf("beacon watch after SIGINT: exit %d, want 0", code)
	}
	if !strings.Contains(p.stdout.String(), " stopped") {
		t.Errorf("beacon watch output ends without \"stopped\":\n%s", p.stdout.String())
	}
}

// TestLiveView: on a terminal, watch redraws a table whose header says how
// fresh the data is; the terminal itself cannot be had in a test, so the
// view is driven directly.
func TestLiveView(t *testing.T) {
	var out strings.Builder
	v := &watchView{out: &out, service: "web", agents: "http://127.0.0.1:8500", live: true}
	t0 := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	in := beacon.Instance{ID: "web-1", Node: "n1", Address: "127.0.0.1", Port: 8080, Health: beacon.HealthPassing}
	good := &discovery.Snapshot{Service: "web", Instances: []beacon.Instance{in}, Updated: t0, Source: discovery.SourceConsul}
	v.update(good, t0.Add(2*time.Second))
	if got := out.String(); !strings.HasPrefix(got, "\x1b[H\x1b[2J") || !strings.Contains(got, "web: 1 instance, 1 passing; updated 15:04:05 (2s ago)") ||
		!hasLine(strings.TrimPrefix(got, "\x1b[H\x1b[2J"), "web-1", "127.0.0.1:8080", "passing", "n1", "-", "-", "0/0") {
		t.Errorf("live view =\n%q\nwant a cleared screen, a header with the age and the table", got)
	}
	out.Reset()
	bad := *good
	bad.Err = errors.New("dial tcp: connection refused")
	v.update(&bad, t0.Add(5*time.Second))
	v.tick(t0.Add(7 * time.Second))
	if got := out.String(); !strings.Contains(got, "web: CONSUL UNREACHABLE (dial tcp: connection refused); showing data from 7s ago") ||
		!strings.Contains(got, "recent changes:") {
		t.Errorf("live view during an outage =\n%s\nwant the outage, the data's age and the recent changes", got)
	}
}

// TestWatchNamesACLProblems: a service hidden by ACLs, or a refused token,
// is not reported as an outage: the fix is a different one.
func TestWatchNamesACLProblems(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: %q: the token may not read it", discovery.ErrHiddenByACLs, "web"), "ACLs hide the service from this token ("},
		{&beacon.StatusError{Method: "GET", Path: "/v1/health/service/web", StatusCode: 403, Message: "ACL not found"}, "consul refused the token ("},
		{fmt.Errorf("%w: dial tcp: connection refused", beacon.ErrUnavailable), "consul unreachable ("},
	} {
		var out strings.Builder
		v := &watchView{out: &out, service: "web"}
		v.update(&discovery.Snapshot{Service: "web", Err: tt.err}, t0)
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("watch output for %v =\n%s\nwant %q", tt.err, out.String(), tt.want)
		}
	}
}
