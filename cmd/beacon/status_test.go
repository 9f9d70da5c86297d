package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/status"
)

// sayhelloCmd is the demo service, for beacon status to read.
var sayhelloCmd = &testutil.Binary{Name: "sayhello", Dir: "../sayhello"}

func syntheticReport() status.Report {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	since := t0.Add(-time.Minute)
	return status.Report{
		Generated: t0, Started: t0.Add(-time.Hour),
		Watches: []status.Watch{
			{Service: "web", Agent: "127.0.0.1:8500", Passing: 2, Instances: 3, Answered: true, AgeSeconds: 2.4, ReadPath: "streaming", Backend: "streaming"},
			{Service: "db", Datacenter: "dc2", Answered: true, AgeSeconds: 40, ReadPath: "blocking", Backend: "blocking-query",
				Error: "hidden by ACLs", ACLHidden: true, StaleViews: 2, Failover: true, Failovers: 1,
				FailoverPolicy: &status.FailoverPolicy{Datacenters: []string{"dc2", "dc3"}, NearestN: 2, MinPassing: 1, HoldDownSeconds: 30}},
		},
		WatchCount: 2,
		Agents: []status.Agent{
			{Address: "http://127.0.0.1:8500", State: "up", Since: &since},
			{Address: "127.0.0.1:8501", State: "down"},
		},
		Keeper: &status.Keeper{InstanceID: "web-1", Agent: "127.0.0.1:8500", Status: "registered", Registered: true, LastHeartbeat: &since, LastHeartbeatOK: true, PreviousAgents: []string{"127.0.0.2:8500"}},
		Events: []status.Event{
			{Time: t0, Kind: status.AgentDown, Agent: "127.0.0.1:8501"},
			{Time: t0.Add(-time.Second), Kind: status.InstanceAdded, Service: "web", Instance: "web-3", Detail: "2 → 3 instances"},
			{Time: t0.Add(-2 * time.Second), Kind: status.InstanceAdded, Service: "web", Instance: "web-2"},
		},
	}
}

// statusServer serves answer at /debug/beacon, recording what was asked.
func statusServer(t *testing.T, answer http.HandlerFunc) (*httptest.Server, chan *http.Request) {
	asked := make(chan *http.Request, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- r:
		default:
		}
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, asked
}

func runStatus(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"status"}, args...), &stdout, &stderr)
	return stdout.String(), err
}

// TestStatusTables: beacon status asks for JSON at /debug/beacon and
// prints every section of a synthetic report; -json prints what the
// process answered; -events bounds the timeline.
func TestStatusTables(t *testing.T) {
	rep := syntheticReport()
	body, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	srv, asked := statusServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(body)
	})
	hostport := strings.TrimPrefix(srv.URL, "http://")
	out, err := runStatus(hostport)
	if err != nil {
		t.Fatalf("beacon status %s: %v", hostport, err)
	}
	r := <-asked
	if r.URL.Path != "/debug/beacon" || r.URL.Query().Get("format") != "json" || r.Header.Get("Accept") != "application/json" {
		t.Errorf("asked %s %q Accept %q; want /debug/beacon?format=json, Accept application/json", r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept"))
	}
	for _, want := range [][]string{
		{"SERVICE", "DATACENTER", "INSTANCES", "AGE", "AGENT", "READ", "BACKEND", "FLAGS", "ERROR"},
		{"web", "(local)", "2/3", "2s", "127.0.0.1:8500", "streaming", "streaming", "-", "-"},
		{"db", "dc2", "0/0", "40s", "-", "blocking", "blocking-query", "acl-hidden,stale-views=2,failover=1", "hidden", "by", "ACLs"},
		{"(failover", "policy", "of", "db:", "to", "dc2,", "dc3,", "nearest", "2", "below", "1", "passing,", "back", "after", "30s)"},
		{"http://127.0.0.1:8500", "up", "2026-11-30T08:59:00Z"},
		{"127.0.0.1:8501", "down", "-"},
		{"KEEPER", "AGENT", "STATUS", "LAST", "HEARTBEAT", "HEARTBEAT", "FAILOVERS", "MAINT", "LAST", "ERROR"},
		{"web-1", "127.0.0.1:8500", "registered", "2026-11-30T08:59:00Z", "accepted", "0", "false", "-"},
		{"(old", "copies", "may", "remain", "on:", "127.0.0.2:8500)"},
		{"2026-11-30T09:00:00Z", "agent_down", "-", "-", "127.0.0.1:8501", "-"},
		{"2026-11-30T08:59:59Z", "instance_added", "web", "web-3", "-", "2", "→", "3", "instances"},
	} {
		if !hasLine(out, want...) {
			t.Errorf("beacon status: no line %q in\n%s", want, out)
		}
	}
	if !strings.HasPrefix(out, "generated 2026-11-30T09:00:00Z, up 1h0m0s\n") {
		t.Errorf("beacon status: first line %q", strings.SplitN(out, "\n", 2)[0])
	}

	out, err = runStatus("-events", "1", srv.URL+"/debug/beacon")
	if err != nil || strings.Contains(out, "web-3") || !strings.Contains(out, "(newest 1 of 3 events; -events N for more)") {
		t.Errorf("beacon status -events 1: %v\n%s", err, out)
	}

	out, err = runStatus(srv.URL, "-json")
	if err != nil {
		t.Fatalf("beacon status -json: %v", err)
	}
	var back status.Report
	if err := json.Unmarshal([]byte(out), &back); err != nil || !reflect.DeepEqual(back, rep) {
		t.Errorf("beacon status -json: %v; decoded %+v, want %+v", err, back, rep)
	}
	if !strings.Contains(out, "\n  \"watches\": [") {
		t.Errorf("beacon status -json is not indented:\n%.300s", out)
	}
}

// TestStatusHeartbeat: the keeper's HEARTBEAT column is the last
// heartbeat's result, "failed" while an error is newer than the last
// accepted heartbeat, "-" before any or after a clean stop.
func TestStatusHeartbeat(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	before, after := t0.Add(-time.Second), t0.Add(time.Second)
	for _, tc := range []struct {
		name string
		k    status.Keeper
		want string
	}{
		{"accepted", status.Keeper{Status: "registered", LastHeartbeat: &t0, LastHeartbeatOK: true, LastErrorAt: &before}, "accepted"},
		{"failed after a success", status.Keeper{Status: "failing", LastHeartbeat: &t0, LastErrorAt: &after}, "failed"},
		{"failed before any", status.Keeper{Status: "unregistered", LastErrorAt: &after}, "failed"},
		{"none yet", status.Keeper{Status: "unregistered"}, "-"},
		{"stopped", status.Keeper{Status: "unregistered", LastHeartbeat: &t0, LastErrorAt: &before}, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.k
			k.InstanceID, k.PreviousAgents = "web-1", []string{}
			var out bytes.Buffer
			if err := writeStatus(&out, status.Report{Generated: t0, Keeper: &k}, 0); err != nil {
				t.Fatal(err)
			}
			// Columns: KEEPER AGENT STATUS LAST-HEARTBEAT HEARTBEAT ...
			var got string
			for _, l := range strings.Split(out.String(), "\n") {
				if f := strings.Fields(l); len(f) >= 5 && f[0] == "web-1" {
					got = f[4]
				}
			}
			if got != tc.want {
				t.Errorf("writeStatus(keeper %+v): HEARTBEAT %q, want %q in\n%s", tc.k, got, tc.want, out.String())
			}
		})
	}
}

// TestStatusErrors: a non-200, an HTML page, a JSON that is not a report,
// an answer too large, and nothing listening are each a statusError of
// their kind (exit 1); a bad URL or flag is a usage error (exit 2).
func TestStatusErrors(t *testing.T) {
	srv, _ := statusServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.Error(w, "404 page not found", http.StatusNotFound)
		case "/html":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>hello</html>")
		case "/list":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, "[1,2]")
		case "/badjson":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"watches": [{"service": 7}]}`)
		case "/huge":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"events":[`)
			chunk := []byte(strings.Repeat(`{"kind":"x"},`, 1000))
			for written := 0; written <= maxStatusBytes; written += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
	})
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		url  string
		kind error
		code int
	}{
		{srv.URL + "/missing", errStatusHTTP, 404},
		{srv.URL + "/html", errStatusNotJSON, 0},
		{srv.URL + "/list", errStatusNotJSON, 0},
		{srv.URL + "/badjson", errStatusNotJSON, 0},
		{srv.URL + "/huge", errStatusTooLarge, 0},
		{closed.URL, errStatusUnreachable, 0},
	} {
		_, err := runStatus(tc.url)
		var se *statusError
		if !errors.Is(err, tc.kind) || !errors.As(err, &se) || se.Code != tc.code || exitCode(err) != 1 {
			t.Errorf("beacon status %s = %v; want a statusError %q, code %d, exit 1", tc.url, err, tc.kind, tc.code)
			continue
		}
		t.Logf("%s: %s", tc.url, errorLine(err))
	}
	// A password in the URL is never printed.
	withUser := strings.Replace(srv.URL, "http://", "http://u:s3cret@", 1)
	for _, u := range []string{withUser + "/badjson", withUser + "/missing", strings.Replace(closed.URL, "http://", "http://u:s3cret@", 1)} {
		if _, err := runStatus(u); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("beacon status %s = %v; want an error without the password", u, err)
		}
	}
	slow, _ := statusServer(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	start := time.Now()
	if _, err := runStatus("-timeout", "200ms", slow.URL); !errors.Is(err, errStatusUnreachable) || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("beacon status -timeout 200ms against a silent server = %v", err)
	}
	if d := time.Since(start); d > deadline {
		t.Errorf("beacon status -timeout 200ms took %v", d)
	}
	for _, args := range [][]string{{}, {"ftp://x/y"}, {"http://"}, {"a", "b"}, {"-events", "-1", "x:1"}, {"-timeout", "0s", "x:1"}} {
		if _, err := runStatus(args...); exitCode(err) != 2 {
			t.Errorf("beacon status %q = %v; want a usage error", args, err)
		}
	}
}

func TestStatusURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8080":                         "http://127.0.0.1:8080/debug/beacon?format=json",
		"http://127.0.0.1:8080/":                 "http://127.0.0.1:8080/debug/beacon?format=json",
		"https://h:1/admin/status?x=1":           "https://h:1/admin/status?format=json&x=1",
		"http://127.0.0.1:8080/debug/beacon#top": "http://127.0.0.1:8080/debug/beacon?format=json",
	} {
		if got, err := statusURL(in); err != nil || got != want {
			t.Errorf("statusURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzStatusAnswer: whatever a process answers, decoding and printing it
// never panics, and what is printed holds no control character but the
// line ends, nor a line longer than the strings' cuts allow.
func FuzzStatusAnswer(f *testing.F) {
	body, _ := json.Marshal(syntheticReport())
	f.Add(body, 20)
	f.Add([]byte(`{"watches":[{"service":"a\u001b[2Jb\tc\nd","age_seconds":1e308,"instances":-5,"answered":true}],"events":[{"time":"0001-01-01T00:00:00Z","kind":"\u202e"}],"generated":"9999-12-31T23:59:59Z"}`), 5)
	f.Add([]byte(`{"keeper":{"last_error":"\xff\xfe"},"agents":[{"address":"`+strings.Repeat("x", 5000)+`"}],"watch_count":-1,"truncated":true}`), 0)
	f.Add([]byte(`null`), 1)
	f.Add([]byte(`{"watches":[{"service":"x","agent":"\u001b[31m","failover_policy":{"datacenters":["\u001b]0;t\u0007","\u202e"],"nearest_n":-3,"min_passing":-1,"hold_down_seconds":1e308}}],"keeper":{"last_heartbeat_ok":true}}`), 3)
	f.Fuzz(func(t *testing.T, body []byte, events int) {
		rep, err := decodeReport(body)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := writeStatus(&out, rep, events%300); err != nil {
			t.Fatalf("writeStatus: %v", err)
		}
		for _, r := range out.String() {
			if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)) {
				t.Fatalf("printed %q (U+%04X) in\n%q", r, r, out.String())
			}
		}
	})
}

// TestStatusOfSayHello runs beacon status as a process against a
// running sayhello on a real agent: its SayHello watch row shows the one
// instance, its agent is up, its keeper registered, and -json decodes.
func TestStatusOfSayHello(t *testing.T) {
	srv := consultest.NewServer(t)
	port := freePort(t)
	id := "SayHello-status-" + strconv.Itoa(port)
	hello := &proc{stdout: &testutil.Buffer{}, stderr: &testutil.Buffer{}, done: make(chan error, 1)}
	hello.cmd = exec.Command(sayhelloCmd.Path(t), "-port", strconv.Itoa(port), "-listen", "127.0.0.1:"+strconv.Itoa(port),
		"-advertise", "127.0.0.1", "-consul", srv.HTTPAddr, "-id", id)
	hello.cmd.Stdout, hello.cmd.Stderr = hello.stdout, hello.stderr
	if err := hello.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { hello.done <- hello.cmd.Wait() }()
	t.Cleanup(func() {
		_ = hello.cmd.Process.Kill()
		<-hello.done
		if t.Failed() {
			t.Logf("sayhello output:\n%s", hello.stderr.String())
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var r result
	testutil.Eventually(t, deadline, "beacon status shows the SayHello watch with its instance", func() error {
		// sayhello watches a service once asked for it.
		if resp, err := httpClient.Get("http://" + addr + "/discovery?serviceName=SayHello"); err == nil {
			resp.Body.Close()
		}
		r = beaconRun(t, nil, "status", addr)
		return testutil.Want(r.code == 0 && watchRow(r.stdout, "SayHello", "1/1"), "exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	})
	if !strings.Contains(r.stdout, srv.HTTPAddr) || !strings.Contains(r.stdout, id) {
		t.Errorf("beacon status %s: want the agent %s and the keeper's %s in\n%s", addr, srv.HTTPAddr, id, r.stdout)
	}
	// The watch's agent (AGENT, after AGE) and the keeper's heartbeat
	// accepted (HEARTBEAT, after LAST HEARTBEAT).
	var watchAgent, beat string
	for _, l := range strings.Split(r.stdout, "\n") {
		switch f := strings.Fields(l); {
		case len(f) >= 5 && f[0] == "SayHello":
			watchAgent = f[4]
		case len(f) >= 5 && f[0] == id:
			beat = f[4]
		}
	}
	if watchAgent != srv.HTTPAddr || beat != "accepted" {
		t.Errorf("beacon status %s: SayHello's agent %q, keeper's heartbeat %q; want %s, accepted, in\n%s", addr, watchAgent, beat, srv.HTTPAddr, r.stdout)
	}
	r = beaconRun(t, nil, "status", "-json", "http://"+addr+"/debug/beacon")
	var rep status.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
		t.Fatalf("beacon status -json: exit %d, %v", r.code, err)
	}
	if len(rep.Watches) == 0 || rep.Watches[0].Service != "SayHello" || rep.Keeper == nil || rep.Keeper.InstanceID != id {
		t.Errorf("beacon status -json: watches %+v, keeper %+v", rep.Watches, rep.Keeper)
	}
	r = beaconRun(t, nil, "status", "http://"+addr+"/nothing-here")
	if r.code != 1 || !strings.Contains(r.stderr, "answered with an HTTP error 404") {
		t.Errorf("beacon status of a missing page: exit %d, stderr %q; want 1 and the 404", r.code, r.stderr)
	}
}

// watchRow: out has a watch row for service, in the local datacenter,
// with instances ("passing/published") in its INSTANCES column.
func watchRow(out, service, instances string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == service && f[1] == "(local)" && f[2] == instances {
			return true
		}
	}
	return false
}
