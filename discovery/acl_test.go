package discovery_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// aclAgent starts an ACL agent (default deny) holding two passing
// instances of "web", registered with the management token.
func aclAgent(t *testing.T) *consultest.Server {
	t.Helper()
	srv := consultest.NewServer(t, consultest.WithACL())
	cfg := srv.Config()
	cfg.Token = srv.ManagementToken()
	r := registry(t, cfg)
	register(t, r, "web-1", "web", beacon.HealthPassing)
	register(t, r, "web-2", "web", beacon.HealthPassing)
	return srv
}

const (
	readAll   = `service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }`
	readOther = `service "other" { policy = "read" } node_prefix "" { policy = "read" }`
)

// TestACLHiddenIsNotScaleToZero: a token that may not read the service gets
// 200 and an empty list from Consul. The cache says why, once in the log
// and in its metrics, instead of reporting zero instances.
func TestACLHiddenIsNotScaleToZero(t *testing.T) {
	srv := aclAgent(t)
	cfg := srv.Config()
	cfg.Token = srv.MintToken(t, readOther)
	logs := &testutil.Buffer{}
	m := &countingMetrics{}
	c := newCache(t, cfg, discovery.WithMetrics(m), discovery.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	w, err := c.Watch(beacon.Query{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err = w.Wait(ctx)
	if !errors.Is(err, discovery.ErrHiddenByACLs) || !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Fatalf("Wait() = %v, want an error matching ErrHiddenByACLs and ErrPermissionDenied", err)
	}
	if !strings.Contains(err.Error(), "service:read") {
		t.Errorf("error %q does not say which permission is missing", err)
	}
	if _, err := c.Pick(ctx, "web", balancer.NewRoundRobin()); !errors.Is(err, discovery.ErrHiddenByACLs) {
		t.Errorf("Pick() = %v, want an error matching ErrHiddenByACLs", err)
	}
	if m.aclHidden.Load() == 0 {
		t.Error("the ACLHidden metric was not counted")
	}
	out := logs.String()
	if n := strings.Count(out, "ACLs hide the service"); n != 1 {
		t.Errorf("the log says ACLs hide the service %d times, want once:\n%s", n, out)
	}
	if strings.Contains(out, cfg.Token) || strings.Contains(out, srv.ManagementToken()) {
		t.Errorf("the log holds a token:\n%s", out)
	}
}

// TestACLTokenLosesRead: a watch that was reading keeps its last good
// instances when the token in its token file is replaced by one that may
// not read the service, and recovers when a reading token comes back.
func TestACLTokenLosesRead(t *testing.T) {
	srv := aclAgent(t)
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, srv.MintToken(t, readAll))
	cfg := srv.Config()
	cfg.TokenFile = file
	mgmt := srv.Config()
	mgmt.Token = srv.ManagementToken()
	r := registry(t, mgmt)
	// A short wait, so every watch query sees the current token soon.
	c := newCache(t, cfg, discovery.WithWaitTime(time.Second))
	w, s := waitFirst(t, c, "web")
	if len(s.Instances) != 2 {
		t.Fatalf("first snapshot = %v, want 2 instances", ids(s))
	}

	writeFile(t, file, srv.MintToken(t, readOther))
	register(t, r, "web-3", "web", beacon.HealthPassing) // a change, to wake the watch
	s = until(t, w, "the hidden service is reported", func(s *discovery.Snapshot) bool { return s.Err != nil })
	if !errors.Is(s.Err, discovery.ErrHiddenByACLs) {
		t.Errorf("snapshot error = %v, want ErrHiddenByACLs", s.Err)
	}
	if len(s.Instances) < 2 {
		t.Errorf("while hidden the snapshot holds %v, want the last good instances", ids(s))
	}
	if p, err := w.Pick(balancer.NewRoundRobin()); err != nil {
		t.Errorf("Pick() while hidden = %v, want a last good instance", err)
	} else {
		p.Done()
	}

	writeFile(t, file, srv.MintToken(t, readAll))
	until(t, w, "the service is visible again", func(s *discovery.Snapshot) bool {
		return s.Err == nil && len(s.Instances) == 3
	})
}

// TestACLNoToken: ACLs on, no token configured, and an anonymous token that
// may read nothing: an empty answer is reported as hidden, naming the fix.
// Once the anonymous token may read the catalog (as operators allow for
// DNS), an empty answer is believed again: scale to zero stays real.
func TestACLNoToken(t *testing.T) {
	srv := aclAgent(t)
	c := newCache(t, srv.Config())
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	w, err := c.Watch(beacon.Query{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, err = w.Wait(ctx)
	if !errors.Is(err, discovery.ErrHiddenByACLs) || !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN") {
		t.Fatalf("Wait() = %v, want ErrHiddenByACLs naming CONSUL_HTTP_TOKEN", err)
	}

	srv.SetAnonymousPolicy(t, readAll)
	c2 := newCache(t, srv.Config())
	if _, s := waitFirst(t, c2, "web"); len(s.Instances) != 2 {
		t.Errorf("with an anonymous token that reads the catalog: web = %v, want 2 instances", ids(s))
	}
	if _, s := waitFirst(t, c2, "ghost"); s.Err != nil || len(s.Instances) != 0 {
		t.Errorf("with an anonymous token that reads the catalog: ghost = %v, error %v; want a believed empty answer", ids(s), s.Err)
	}
}

// TestScaleToZeroWithReadingToken: with a token that may read, an empty
// answer is a real scale to zero.
func TestScaleToZeroWithReadingToken(t *testing.T) {
	srv := aclAgent(t)
	cfg := srv.Config()
	cfg.Token = srv.MintToken(t, readAll)
	mgmt := srv.Config()
	mgmt.Token = srv.ManagementToken()
	r := registry(t, mgmt)
	c := newCache(t, cfg)
	w, s := waitFirst(t, c, "web")
	if len(s.Instances) != 2 {
		t.Fatalf("first snapshot = %v, want 2 instances", ids(s))
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for _, id := range []string{"web-1", "web-2"} {
		if err := r.Deregister(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	s = until(t, w, "scale to zero", func(s *discovery.Snapshot) bool { return len(s.Instances) == 0 })
	if s.Err != nil {
		t.Errorf("scale to zero with a reading token: error %v, want none", s.Err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename, so a reader never sees a half-written token, and
	// the new inode's modification time marks the change.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
