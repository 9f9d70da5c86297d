package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestZoneFlagProcesses: sayhello -zone registers meta zone=<zone>, and
// sayhello -call with $BEACON_ZONE=a sends every call to the instance in
// zone a (no spread of callers known: all stay local).
func TestZoneFlagProcesses(t *testing.T) {
	srv := consultest.NewServer(t)
	c, _ := consulhttp.New(srv.Config())
	defer c.Close()
	a := startSayHello(t, srv.HTTPAddr, "-zone", "a")
	b := startSayHello(t, srv.HTTPAddr, "-zone", "b")
	testutil.Eventually(t, deadline, "two instances passing", passingCond(t, c, func(ids []string) bool { return len(ids) == 2 }))
	insts, _, err := c.Instances(t.Context(), beacon.Query{Service: "SayHello"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		want := map[string]string{a.id: "a", b.id: "b"}[in.ID]
		if in.Zone("") != want {
			t.Errorf("instance %s: meta %v, want zone %q", in.ID, in.Meta, want)
		}
	}
	cmd := exec.Command(sayhelloCmd.Path(t), "-consul", srv.HTTPAddr, "-call", "SayHello", "-n", "10")
	cmd.Env = append(os.Environ(), beacon.ZoneEnv+"=a")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("BEACON_ZONE=a sayhello -call: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 10 || strings.Count(string(out), a.id) != 10 {
		t.Errorf("BEACON_ZONE=a sayhello -call -n 10 printed:\n%s\nwant 10 lines, all from %s (zone a)", out, a.id)
	}
}
