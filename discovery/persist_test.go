package discovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// savedFile is a snapshot file as writeSnapshots writes it (keys are
// watchKey's, NUL-separated).
const savedFile = `{"web\u0000\u0000\u0000\u0000false\u00000\u0000false":{"Service":"web","Instances":[` +
	`{"ID":"web-1","Service":"web","Node":"vm","Address":"10.0.0.5","Port":8080,"Tags":["v1"],"Meta":{"version":"1.2"},"Weights":{"Passing":10,"Warning":1},"Health":"passing"},` +
	`{"ID":"web-2","Service":"web","Node":"vm","Address":"10.0.0.6","Port":8080,"Tags":null,"Meta":null,"Weights":{"Passing":1,"Warning":1},"Health":"warning"}],` +
	`"Updated":"2026-11-27T11:18:59.415123456Z"}}`

func TestDecodeSnapshots(t *testing.T) {
	saved, err := decodeSnapshots([]byte(savedFile))
	if err != nil || len(saved) != 1 {
		t.Fatalf("decodeSnapshots(savedFile) = %v, %v; want one entry", saved, err)
	}
	for _, s := range saved {
		if s.Service != "web" || len(s.Instances) != 2 || s.Instances[1].Health != beacon.HealthWarning ||
			!s.Updated.Equal(time.Date(2026, 11, 27, 11, 18, 59, 415123456, time.UTC)) {
			t.Errorf("decodeSnapshots(savedFile) = %+v, want web's two instances", s)
		}
	}
	for _, tc := range []struct{ name, file string }{
		{"not JSON", `{"web":`},
		{"wrong shape", `[]`},
		{"two values", `{} {}`},
		{"bad service", `{"k":{"Service":"no\u0001name"}}`},
		{"no ID", `{"k":{"Service":"web","Instances":[{"Health":"passing"}]}}`},
		{"bad port", `{"k":{"Service":"web","Instances":[{"ID":"a","Port":70000,"Health":"passing"}]}}`},
		{"bad health", `{"k":{"Service":"web","Instances":[{"ID":"a","Health":"fine"}]}}`},
		{"no health", `{"k":{"Service":"web","Instances":[{"ID":"a"}]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if saved, err := decodeSnapshots([]byte(tc.file)); !errors.Is(err, beacon.ErrMalformedResponse) || saved != nil {
				t.Errorf("decodeSnapshots(%s) = %v, %v; want nothing and ErrMalformedResponse", tc.file, saved, err)
			}
		})
	}
	if saved, err := decodeSnapshots([]byte(`null`)); err != nil || saved == nil || len(saved) != 0 {
		t.Errorf("decodeSnapshots(null) = %#v, %v; want an empty map", saved, err)
	}
}

// TestLoadSnapshotsCap: a huge file is refused after reading no more than
// the cap, not read whole.
func TestLoadSnapshotsCap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshots.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: a terabyte on paper, nothing on disk.
	if err := f.Truncate(1 << 40); err != nil {
		t.Skipf("cannot make a sparse file here: %v", err)
	}
	f.Close()
	if saved, err := loadSnapshots(path); !errors.Is(err, beacon.ErrMalformedResponse) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("loadSnapshots(1 TiB file) = %d entries, %v; want ErrMalformedResponse, larger than the cap", len(saved), err)
	}
	if saved, err := loadSnapshots(filepath.Join(dir, "missing.json")); err != nil || len(saved) != 0 {
		t.Errorf("loadSnapshots(missing) = %v, %v; want an empty map", saved, err)
	}
	if err := os.WriteFile(path, []byte(savedFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if saved, err := loadSnapshots(path); err != nil || len(saved) != 1 {
		t.Errorf("loadSnapshots(savedFile) = %v, %v; want one entry", saved, err)
	}
}

// FuzzDecodeSnapshots: a snapshot file either decodes to instances that
// look like Consul's (and write back to a file that decodes the same), or
// is refused as malformed.
func FuzzDecodeSnapshots(f *testing.F) {
	for _, seed := range []string{
		savedFile, savedFile[:len(savedFile)/2], `{}`, `null`, `[]`, `{"k":null}`, `{"k":{"Service":"web","Instances":[null]}}`,
		`{"k":{"Service":"web","Updated":"not a time"}}`, `{"k":{"Service":"web","Instances":[{"ID":"a","Health":"critical","Port":-1}]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		saved, err := decodeSnapshots(b)
		if err != nil {
			if !errors.Is(err, beacon.ErrMalformedResponse) || saved != nil {
				t.Fatalf("decodeSnapshots(%q) = %v, %v; want nothing and an error matching ErrMalformedResponse", b, saved, err)
			}
			return
		}
		for key, s := range saved {
			if beacon.ValidateServiceName(s.Service) != nil {
				t.Fatalf("decodeSnapshots(%q)[%q].Service = %q, not a service name", b, key, s.Service)
			}
			for _, in := range s.Instances {
				if in.ID == "" || !in.Health.Valid() || in.Port < 0 || in.Port > 65535 {
					t.Fatalf("decodeSnapshots(%q)[%q] holds %+v", b, key, in)
				}
			}
		}
		// What the cache would write back reads back the same.
		out, err := json.Marshal(saved)
		if err != nil {
			// A year outside 0–9999 decodes but does not encode; the
			// writer then logs and keeps the old file.
			return
		}
		again, err := decodeSnapshots(out)
		if err != nil {
			t.Fatalf("decodeSnapshots(%q) = ok, but its re-encoding %q fails: %v", b, out, err)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("decodeSnapshots round trip: %q became %q", out, out2)
		}
	})
}
