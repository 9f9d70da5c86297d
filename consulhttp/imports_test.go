package consulhttp_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestImportsStandardLibraryOnly keeps the client what its doc promises: the
// standard library plus Beacon's own packages, nothing else.
func TestImportsStandardLibraryOnly(t *testing.T) {
	const pkg = "github.com/beaconsd/beacon/consulhttp"
	const prefix = "github.com/beaconsd/beacon"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
	if err != nil {
		var stderr string
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatalf("go list -deps %s listed no non-standard package, want at least %s itself", pkg, pkg)
	}
	for _, dep := range deps {
		if dep != prefix && !strings.HasPrefix(dep, prefix+"/") {
			t.Errorf("%s depends on %q, want only the standard library and %s/...", pkg, dep, prefix)
		}
	}
}
