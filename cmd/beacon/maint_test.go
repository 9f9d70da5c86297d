package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// TestMaintProcess: beacon maint on and off, run as processes, take a
// kept instance out of a discovery cache's passing snapshot and out of
// httpclient's picks, and bring it back; beacon instances -all marks it.
func TestMaintProcess(t *testing.T) {
	srv := consultest.NewServer(t)
	cfg := srv.Config()

	// Two instances that count their calls.
	var hits [2]atomic.Int64
	for i := range hits {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			io.WriteString(w, "ok")
		})}
		served := make(chan struct{})
		go func() { defer close(served); _ = hs.Serve(ln) }()
		t.Cleanup(func() { hs.Close(); <-served })
		k, err := keeper.New(cfg, beacon.Registration{
			ID: fmt.Sprintf("mweb-%d", i), Service: "mweb", Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			_ = k.Stop(ctx)
		})
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		err = k.Start(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Start() = %v", err)
		}
	}

	cache, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	tr := httpclient.New(cache)
	t.Cleanup(func() { tr.Close() })
	client := &http.Client{Transport: tr, Timeout: deadline}

	ids := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		insts, err := cache.Instances(ctx, "mweb")
		if err != nil {
			return nil
		}
		var out []string
		for _, in := range insts {
			out = append(out, in.ID)
		}
		slices.Sort(out)
		return out
	}
	// calls makes n calls and returns how many reached each instance.
	calls := func(n int) [2]int64 {
		before := [2]int64{hits[0].Load(), hits[1].Load()}
		for range n {
			resp, err := client.Get("http://mweb/")
			if err != nil {
				t.Fatalf("GET http://mweb/ = %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return [2]int64{hits[0].Load() - before[0], hits[1].Load() - before[1]}
	}
	testutil.Eventually(t, deadline, "both instances discovered", func() error {
		return testutil.Want(slices.Equal(ids(), []string{"mweb-0", "mweb-1"}), "discovered %q", ids())
	})

	addr := srv.HTTPAddr
	if r := beaconRun(t, nil, "maint", "mweb-0", "on", "-reason", "replacing a disk", "-consul", addr); r.code != 0 || !strings.Contains(r.stdout, "maintenance on for mweb-0") {
		t.Fatalf("beacon maint mweb-0 on: exit %d, stdout %q, want 0 and a confirmation", r.code, r.stdout)
	}
	testutil.Eventually(t, deadline, "mweb-0 out of the passing snapshot", func() error {
		return testutil.Want(slices.Equal(ids(), []string{"mweb-1"}), "discovered %q", ids())
	})
	if got := calls(20); got[0] != 0 || got[1] != 20 {
		t.Errorf("20 calls while mweb-0 is in maintenance reached %v, want [0 20]", got)
	}
	if r := beaconRun(t, nil, "instances", "mweb", "-all", "-consul", addr); r.code != 0 || !strings.Contains(r.stdout, "critical(maint)") {
		t.Errorf("beacon instances mweb -all: exit %d, stdout %q, want mweb-0 marked critical(maint)", r.code, r.stdout)
	}

	if r := beaconRun(t, nil, "maint", "mweb-0", "off", "-consul", addr); r.code != 0 {
		t.Fatalf("beacon maint mweb-0 off: exit %d, want 0", r.code)
	}
	testutil.Eventually(t, deadline, "mweb-0 back in the passing snapshot", func() error {
		return testutil.Want(slices.Equal(ids(), []string{"mweb-0", "mweb-1"}), "discovered %q", ids())
	})
	if got := calls(20); got[0] == 0 || got[1] == 0 {
		t.Errorf("20 calls after maintenance off reached %v, want both instances", got)
	}
}

func TestMaintUsage(t *testing.T) {
	for _, args := range [][]string{
		{"maint"},
		{"maint", "web-1"},
		{"maint", "web-1", "maybe"},
		{"maint", "web-1", "off", "-reason", "x"},
		{"maint", "web-1", "on", "-reason", "bad\x01"},
		{"maint", "", "on"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if exitCode(err) != 2 {
			t.Errorf("run(%q) = %v (exit %d), want a usage error (exit 2)", args, err, exitCode(err))
		}
	}
}

func TestMaintUnknownID(t *testing.T) {
	srv := consultest.NewServer(t)
	r := beaconRun(t, nil, "maint", "no-such", "on", "-consul", srv.HTTPAddr)
	if r.code != 1 || !strings.Contains(r.stderr, "not registered") {
		t.Errorf("beacon maint no-such on: exit %d, stderr %q, want 1 and not registered", r.code, r.stderr)
	}
}
