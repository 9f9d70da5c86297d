package keeper_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// rotatingToken starts an ACL agent and mints two tokens that may write
// service "kept"; cfg reads its token from a file holding the first, which
// a test replaces with the second (replaceFile) to rotate it.
func rotatingToken(t *testing.T) (srv *consultest.Server, cfg consul.Config, tokenA, tokenB string) {
	t.Helper()
	srv = consultest.NewServer(t, consultest.WithACL())
	const rules = `service "kept" { policy = "write" } node_prefix "" { policy = "read" }`
	tokenA, tokenB = srv.MintToken(t, rules), srv.MintToken(t, rules)
	file := filepath.Join(t.TempDir(), "token")
	replaceFile(t, file, tokenA)
	cfg = srv.Config()
	cfg.TokenFile = file
	return srv, cfg, tokenA, tokenB
}

// TestTokenFileRotation: the keeper runs with CONSUL_HTTP_TOKEN_FILE's
// token A; the file is replaced by token B and A is revoked, as a rotation
// does. The agent syncs a service and its checks to the catalog with the
// token they were registered with, so unless the keeper registers again
// with B, the catalog stops following the instance: here, a health change
// made after the revocation must reach the catalog.
func TestTokenFileRotation(t *testing.T) {
	srv, cfg, tokenA, tokenB := rotatingToken(t)
	file := cfg.TokenFile
	mgmt := srv.Config()
	mgmt.Token = srv.ManagementToken()
	c := client(t, mgmt)

	logs := &testutil.Buffer{}
	var health atomic.Value
	health.Store(beacon.HealthPassing)
	k := newKeeper(t, cfg, registration("k-rotate"), keeper.WithTTL(900*time.Millisecond),
		keeper.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		keeper.WithHealth(func(context.Context) (beacon.Health, string) {
			h := health.Load().(beacon.Health)
			return h, "self-check: " + string(h)
		}))
	start(t, k)
	testutil.Eventually(t, deadline, "registered and passing", func() error { return testutil.Want(passing(c, "k-rotate"), "k-rotate not passing") })

	replaceFile(t, file, tokenB)
	srv.RevokeToken(t, tokenA)
	health.Store(beacon.HealthWarning)
	var last []beacon.Instance
	defer func() {
		if t.Failed() {
			t.Logf("last seen in the catalog: %+v", last)
		}
	}()
	took := testutil.Eventually(t, deadline, "a health change after the rotation reaches the catalog", func() error {
		last = instances(c, true)
		return testutil.Want(len(last) == 1 && last[0].Health == beacon.HealthWarning, "registered: %+v", last)
	})
	t.Logf("rotation → catalog follows the instance again in %v", took.Round(time.Millisecond))
	if st := k.Status(); !st.Registered {
		t.Errorf("Status() after the rotation = %+v, want registered", st)
	}
	out := logs.String()
	if !strings.Contains(out, "token file changed") {
		t.Errorf("the log does not say the token changed:\n%s", out)
	}
	for _, tok := range []string{tokenA, tokenB, srv.ManagementToken()} {
		if strings.Contains(out, tok) {
			t.Errorf("the log holds a token:\n%s", out)
		}
	}
}

// replaceFile swaps path's content atomically, as secret managers do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
