package consulkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulkit"
	"github.com/beaconsd/beacon/consultest"
)

// TestProbeACLs: ACLs off, on without a token, on with a valid one.
func TestProbeACLs(t *testing.T) {
	plain := consultest.NewServer(t)
	acl := consultest.NewServer(t, consultest.WithACL())
	withToken := acl.Config()
	withToken.Token = acl.MintToken(t, `node_prefix "" { policy = "read" }`)
	for _, tt := range []struct {
		name string
		cfg  consul.Config
		want beacon.ACLs
	}{
		{"ACLs off", plain.Config(), beacon.ACLsDisabled},
		{"no token", acl.Config(), beacon.ACLsNoToken},
		{"valid token", withToken, beacon.ACLsToken},
	} {
		c, err := consulkit.New(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		got, err := c.ProbeACLs(ctx)
		cancel()
		c.Close()
		if err != nil || got != tt.want {
			t.Errorf("%s: ProbeACLs() = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}
