package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestPanicThresholdFlag: with -panic-threshold 0.5 and 1 of 3 SayHello
// instances passing, /discovery lists all three, marked Panic with their
// health, and sayhello -call spreads its calls over the three.
func TestPanicThresholdFlag(t *testing.T) {
	srv := consultest.NewServer(t)
	c, _ := consulhttp.New(srv.Config())
	defer c.Close()
	p := startSayHello(t, srv.HTTPAddr, "-panic-threshold", "0.5")
	testutil.Eventually(t, deadline, "instance passing", passingCond(t, c, func(ids []string) bool { return len(ids) == 1 }))
	// Two more SayHello instances that answer but fail their checks.
	var sick []string
	for i := range 2 {
		id := fmt.Sprintf("SayHello-sick-%d", i)
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "Hello from %s!\n", id) }))
		t.Cleanup(hs.Close)
		_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
		n, _ := strconv.Atoi(port)
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		err := c.Register(ctx, beacon.Registration{ID: id, Service: "SayHello", Address: "127.0.0.1", Port: n,
			Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthCritical}}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		sick = append(sick, id)
	}

	var got []instanceJSON
	testutil.Eventually(t, deadline, "/discovery lists all three in panic", func() error {
		code, h, body := get(t, p.url("/discovery?serviceName=SayHello"))
		got = nil
		if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
			return fmt.Errorf("GET /discovery = %d %q", code, body)
		}
		return testutil.Want(len(got) == 3 && h.Get("X-Beacon-Panic") == "true", "GET /discovery = %s (X-Beacon-Panic %q)", body, h.Get("X-Beacon-Panic"))
	})
	for _, in := range got {
		want := string(beacon.HealthCritical)
		if in.ID == p.id {
			want = string(beacon.HealthPassing)
		}
		if !in.Panic || in.Health != want {
			t.Errorf("/discovery in panic: %s Panic %v Health %q, want true, %q", in.ID, in.Panic, in.Health, want)
		}
	}

	cmd := exec.Command(sayhelloCmd.Path(t), "-consul", srv.HTTPAddr, "-call", "SayHello", "-n", "9", "-panic-threshold", "0.5")
	var stderr testutil.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sayhello -call -panic-threshold 0.5: %v\n%s\n%s", err, out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	count := map[string]int{}
	for _, l := range lines {
		for _, id := range append([]string{p.id}, sick...) {
			if strings.Contains(l, "Hello from "+id+"!") {
				count[id]++
			}
		}
		if !strings.HasSuffix(l, " [local, panic]") {
			t.Errorf("sayhello -call line %q, want it to end in [local, panic]", l)
		}
	}
	if len(lines) != 9 || count[p.id] != 3 || count[sick[0]] != 3 || count[sick[1]] != 3 {
		t.Errorf("sayhello -call -n 9 -panic-threshold 0.5 printed:\n%s\nwant 9 lines, 3 from each of the three instances (%v)", out, count)
	}
}
