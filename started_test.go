package beacon_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

func TestStartedAt(t *testing.T) {
	tests := []struct {
		meta map[string]string
		want int64 // Unix seconds; 0: absent
	}{
		{nil, 0},
		{map[string]string{"other": "1"}, 0},
		{map[string]string{beacon.MetaStarted: "1767139200"}, 1767139200},
		{map[string]string{beacon.MetaStarted: "1"}, 1},
		{map[string]string{beacon.MetaStarted: ""}, 0},
		{map[string]string{beacon.MetaStarted: "0"}, 0},
		{map[string]string{beacon.MetaStarted: "-5"}, 0},
		{map[string]string{beacon.MetaStarted: "+5"}, 0},
		{map[string]string{beacon.MetaStarted: " 5"}, 0},
		{map[string]string{beacon.MetaStarted: "1.5"}, 0},
		{map[string]string{beacon.MetaStarted: "2026-11-30T00:00:00Z"}, 0},
		{map[string]string{beacon.MetaStarted: "9999999999999"}, 0}, // 13 digits
		{map[string]string{beacon.MetaStarted: "999999999999"}, 999999999999},
	}
	for _, tt := range tests {
		got, ok := beacon.StartedAt(beacon.Instance{Meta: tt.meta})
		if (tt.want != 0) != ok || ok && got.Unix() != tt.want {
			t.Errorf("StartedAt(meta %q) = %v, %v; want %d, %v", tt.meta, got, ok, tt.want, tt.want != 0)
		}
	}
}

func TestStartedMetaRoundTrip(t *testing.T) {
	now := time.Now()
	v := beacon.StartedMeta(now)
	got, ok := beacon.StartedAt(beacon.Instance{Meta: map[string]string{beacon.MetaStarted: v}})
	if !ok || got.Unix() != now.Unix() {
		t.Errorf("StartedAt(StartedMeta(%v)) = %v, %v; want %v, true", now, got, ok, now.Unix())
	}
	if err := beacon.ValidateMeta(map[string]string{beacon.MetaStarted: v}); err != nil {
		t.Errorf("ValidateMeta(%s=%s) = %v, want nil", beacon.MetaStarted, v, err)
	}
}

// FuzzStartedAt: any meta value is either refused or read back as the
// positive number it spells.
func FuzzStartedAt(f *testing.F) {
	for _, s := range []string{"", "0", "1767139200", "-1", "1e9", "99999999999999999999", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, ok := beacon.StartedAt(beacon.Instance{Meta: map[string]string{beacon.MetaStarted: v}})
		if !ok {
			return
		}
		if n, err := strconv.ParseInt(v, 10, 64); err != nil || n <= 0 || got.Unix() != n {
			t.Errorf("StartedAt(%q) = %v, true; want it refused or %v", v, got, n)
		}
	})
}
