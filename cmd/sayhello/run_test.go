package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/discovery"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-port", "0"},
		{"-port", "70000"},
		{"-backend", "grpc"},
		{"-meta", "novalue"},
		{"-nosuchflag"},
		{"extra"},
		{"-name", "bad\x01name", "-consul", "127.0.0.1:1"},
		{"-name", "", "-consul", "127.0.0.1:1"},
		{"-meta", "consul-x=1", "-consul", "127.0.0.1:1"},
		{"-failover", "", "-consul", "127.0.0.1:1"},
		{"-failover", "dc2,,dc3", "-consul", "127.0.0.1:1"},
		{"-failover", "dc/2", "-consul", "127.0.0.1:1"},
		{"-failover", "dc.2", "-consul", "127.0.0.1:1"},
		{"-failover", "dc2,dc2", "-consul", "127.0.0.1:1"},
		{"-failover", "dc2", "-failover", "dc2", "-consul", "127.0.0.1:1"},
		{"-failover", "dc2", "-failover-nearest", "-1", "-consul", "127.0.0.1:1"},
		{"-failover", "dc2", "-failover-hold-down", "-1s", "-consul", "127.0.0.1:1"},
		{"-failover-hold-down", "5s", "-consul", "127.0.0.1:1"},
		{"-failover", "dc2", "-call", "SayHello", "-interval", "-1s", "-consul", "127.0.0.1:1"},
		{"-panic-threshold", "1.5", "-consul", "127.0.0.1:1"},
		{"-panic-threshold", "-0.1", "-consul", "127.0.0.1:1"},
		{"-panic-threshold", "NaN", "-consul", "127.0.0.1:1"},
		{"-panic-threshold", "half", "-consul", "127.0.0.1:1"},
		{"-call", "SayHello", "-slow-start", "-1s", "-consul", "127.0.0.1:1"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("run(%q) = %v, want a usage error (exit 2)", args, err)
		}
	}
}

// TestListenWhereAdvertised: with -advertise and no -listen, sayhello
// listens on the advertised address only; with neither, on every
// interface (advertising the outbound IP).
func TestListenWhereAdvertised(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-port", "10086", "-advertise", "127.0.0.1"}, "127.0.0.1:10086"},
		{[]string{"-port", "10086", "-advertise", "::1"}, "[::1]:10086"},
		{[]string{"-port", "10086"}, ":10086"},
		{[]string{"-port", "10086", "-advertise", "127.0.0.1", "-listen", "127.0.0.2:9"}, "127.0.0.2:9"},
	} {
		o, err := parseFlags(tc.args, io.Discard)
		if err != nil || o.listen != tc.want {
			t.Errorf("parseFlags(%q).listen = %q, %v; want %q", tc.args, o.listen, err, tc.want)
		}
	}
}

func TestFlagValues(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-tags", " a, b,,c ", "-tags", "d", "-meta", "k=v=w,x", "-meta", "e="}, &stderr)
	if err != nil {
		t.Fatalf("parseFlags = %v, want no error", err)
	}
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(o.tags, want) {
		t.Errorf("-tags = %q, want %q", o.tags, want)
	}
	if want := map[string]string{"k": "v=w,x", "e": ""}; !maps.Equal(o.meta, want) {
		t.Errorf("-meta = %q, want %q", o.meta, want)
	}
}

// TestFailoverFlags: -failover lists datacenters in order, repeatable,
// spaces trimmed; bad values are usage errors matching beacon.ErrInvalid.
func TestFailoverFlags(t *testing.T) {
	o, err := parseFlags([]string{"-failover", " dc2, dc3 ", "-failover", "eu-west_1", "-failover-nearest", "2", "-failover-hold-down", "3s"}, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags = %v, want no error", err)
	}
	want := discovery.Failover{Datacenters: []string{"dc2", "dc3", "eu-west_1"}, NearestN: 2, HoldDown: 3 * time.Second}
	if !slices.Equal(o.failover.Datacenters, want.Datacenters) || o.failover.NearestN != want.NearestN || o.failover.HoldDown != want.HoldDown {
		t.Errorf("parseFlags(-failover ...).failover = %+v, want %+v", o.failover, want)
	}
	if o, err := parseFlags(nil, io.Discard); err != nil || o.failover.Datacenters != nil || o.failover.NearestN != 0 || len(cacheOptions(o, nil)) != 3 { // backend, logger, read path: no failover
		t.Errorf("parseFlags() = %+v, %v; want no failover policy", o.failover, err)
	}
	for _, args := range [][]string{
		{"-failover", "dc2,,dc3"},
		{"-failover", "dc 2"},
		{"-failover", "dc2,dc2"},
		{"-failover", "dc2", "-failover-nearest", "-1"},
		{"-failover-hold-down", "5s"},
	} {
		_, err := parseFlags(args, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !errors.Is(err, beacon.ErrInvalid) {
			t.Errorf("parseFlags(%q) = %v, want a usage error matching beacon.ErrInvalid", args, err)
		}
	}
}

// FuzzFlagValues: -tags and -meta values split into what was written, and
// nothing else; -failover values into valid datacenter names or a typed
// error.
func FuzzFlagValues(f *testing.F) {
	for _, s := range []string{"a,b", " a , ,b,", "", ",", "k=v", "k=", "=v", "k", "k=v=w,x", "\x00=\xff", "é=é", "dc2,dc3", " dc2 ,dc-3_x", "dc.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags := splitTags(s)
		for _, tag := range tags {
			if tag == "" || tag != strings.TrimSpace(tag) || strings.Contains(tag, ",") {
				t.Fatalf("splitTags(%q) = %q: %q is empty, untrimmed or holds a comma", s, tags, tag)
			}
		}
		if again := splitTags(strings.Join(tags, ",")); !slices.Equal(again, tags) {
			t.Fatalf("splitTags(%q) = %q, but its join splits into %q", s, tags, again)
		}
		dcs, err := parseDatacenters(s)
		if err != nil {
			if !errors.Is(err, beacon.ErrInvalid) || dcs != nil {
				t.Fatalf("parseDatacenters(%q) = %q, %v; want no names and an error matching beacon.ErrInvalid", s, dcs, err)
			}
		} else {
			for _, dc := range dcs {
				if dc == "" || strings.ContainsAny(dc, ", ") || beacon.ValidateDatacenter(dc) != nil {
					t.Fatalf("parseDatacenters(%q) = %q: %q is empty, holds a comma or space, or is invalid", s, dcs, dc)
				}
			}
			if again, err := parseDatacenters(strings.Join(dcs, ",")); err != nil || !slices.Equal(again, dcs) {
				t.Fatalf("parseDatacenters(%q) = %q, but its join parses into %q, %v", s, dcs, again, err)
			}
		}
		k, v, err := parseMetaPair(s)
		if err != nil {
			if k != "" || v != "" || strings.Index(s, "=") > 0 {
				t.Fatalf("parseMetaPair(%q) = %q, %q, %v; want key=value accepted", s, k, v, err)
			}
			return
		}
		if k == "" || strings.Contains(k, "=") || k+"="+v != s {
			t.Fatalf("parseMetaPair(%q) = %q, %q; want the first '=' to split it", s, k, v)
		}
	})
}

// TestZoneFlag: -zone (default $BEACON_ZONE) adds meta zone=<zone> unless
// -meta sets it; -zone-callers needs a zone.
func TestZoneFlag(t *testing.T) {
	t.Setenv(beacon.ZoneEnv, "")
	for _, tc := range []struct {
		env      string
		args     []string
		zone     string
		wantMeta map[string]string
	}{
		{"", nil, "", map[string]string{}},
		{"", []string{"-zone", "a"}, "a", map[string]string{"zone": "a"}},
		{"b", nil, "b", map[string]string{"zone": "b"}},
		{"b", []string{"-zone", "a"}, "a", map[string]string{"zone": "a"}},
		{"", []string{"-meta", "zone=c", "-zone", "a"}, "a", map[string]string{"zone": "c"}},
	} {
		t.Setenv(beacon.ZoneEnv, tc.env)
		o, err := parseFlags(tc.args, io.Discard)
		if err != nil || o.zone != tc.zone || !maps.Equal(o.meta, tc.wantMeta) {
			t.Errorf("BEACON_ZONE=%q parseFlags(%q) = zone %q, meta %v, %v; want zone %q, meta %v", tc.env, tc.args, o.zone, o.meta, err, tc.zone, tc.wantMeta)
		}
	}
	t.Setenv(beacon.ZoneEnv, "")
	var ue usageError
	if _, err := parseFlags([]string{"-zone-callers", "web"}, io.Discard); !errors.As(err, &ue) {
		t.Errorf("parseFlags(-zone-callers web) without a zone = %v, want a usage error", err)
	}
}

// TestReadPathFlag: -read-path, else $BEACON_READ_PATH, chooses how
// discovery reads Consul; a word it does not know is a usage error.
func TestReadPathFlag(t *testing.T) {
	t.Setenv(discovery.ReadPathFileEnv, "")
	for _, tc := range []struct {
		env  string
		args []string
		want discovery.ReadPath
	}{
		{"", nil, discovery.ReadStreaming},
		{"blocking", nil, discovery.ReadBlocking},
		{"blocking", []string{"-read-path", "cached"}, discovery.ReadCached},
		{"", []string{"-read-path", "blocking"}, discovery.ReadBlocking},
	} {
		t.Setenv(discovery.ReadPathEnv, tc.env)
		o, err := parseFlags(tc.args, io.Discard)
		if err != nil || o.readPath != tc.want {
			t.Errorf("%s=%q parseFlags(%q) = %v, %v; want %v", discovery.ReadPathEnv, tc.env, tc.args, o.readPath, err, tc.want)
		}
	}
	t.Setenv(discovery.ReadPathEnv, "sometimes")
	var ue usageError
	if _, err := parseFlags(nil, io.Discard); !errors.As(err, &ue) || !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("%s=sometimes parseFlags() = %v, want a usage error wrapping ErrInvalid", discovery.ReadPathEnv, err)
	}
}
