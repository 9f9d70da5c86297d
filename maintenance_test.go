package beacon

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestValidateMaintenance(t *testing.T) {
	for _, tc := range []struct {
		id, reason string
		ok         bool
	}{
		{"web-1", "", true},
		{"web-1", "replacing a disk — ticket #42", true},
		{"web 1/a?b", strings.Repeat("x", MaxMaintenanceReason), true},
		{"web-1", strings.Repeat("x", MaxMaintenanceReason+1), false},
		{"web-1", "bad \xff", false},
		{"web-1", "two\nlines", false},
		{"web-1", "tab\t", false},
		{"", "reason", false},
		{"..", "", false},
	} {
		err := ValidateMaintenance(tc.id, tc.reason)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("ValidateMaintenance(%q, %.30q) = %v, want ok %v (errors matching ErrInvalid)", tc.id, tc.reason, err, tc.ok)
		}
	}
}

func TestIsMaintenanceCheck(t *testing.T) {
	for _, tc := range []struct {
		check, id string
		want      bool
	}{
		{"_service_maintenance:web-1", "web-1", true},
		{"_node_maintenance", "web-1", true},
		{"_service_maintenance:web-10", "web-1", false},
		{"_service_maintenance:web-1", "web-10", false},
		{"service:web-1", "web-1", false},
		{"", "", false},
	} {
		if got := IsMaintenanceCheck(tc.check, tc.id); got != tc.want {
			t.Errorf("IsMaintenanceCheck(%q, %q) = %v, want %v", tc.check, tc.id, got, tc.want)
		}
	}
}

// FuzzValidateMaintenance: the validator never panics, and every reason
// it accepts is one the agent can take in a query string and show: valid
// UTF-8, no control characters, within the bound.
func FuzzValidateMaintenance(f *testing.F) {
	f.Add("web-1", "")
	f.Add("web-1", "replacing a disk")
	f.Add("a/b?c", "bad \xff")
	f.Add("web-1", "nul\x00")
	f.Fuzz(func(t *testing.T, id, reason string) {
		err := ValidateMaintenance(id, reason)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateMaintenance(%q, %q) = %v, want an error matching ErrInvalid", id, reason, err)
			}
			return
		}
		if ValidateID("ID", id) != nil || len(reason) > MaxMaintenanceReason || !utf8.ValidString(reason) ||
			strings.IndexFunc(reason, unicode.IsControl) >= 0 {
			t.Fatalf("ValidateMaintenance(%q, %q) = nil, want an error", id, reason)
		}
	})
}
