package registrytest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/registrytest"
)

// The suites are run in full against both backends by their TestConformance
// and TestHostileAgent. Here they are run against broken backends, to show that
// they catch what they claim to: each mutant below is consulhttp with one
// flaw, and the subtest named next to it must fail.

// mutantEnv names the mutant a child test process runs the suite against.
const mutantEnv = "REGISTRYTEST_MUTANT"

// mutant is a consulhttp client with one flaw.
type mutant struct {
	beacon.Registry
	flaw string

	mu   sync.Mutex
	regs map[string]beacon.Registration // what Register was last given, by ID
}

func (m *mutant) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	switch m.flaw {
	case "lookup-includes-unhealthy":
		// The original tutorial client's habit: no ?passing.
		q.IncludeUnhealthy = true
	case "lookup-ignores-tags":
		q.Tags = nil
	case "lookup-never-blocks":
		q.WaitIndex, q.WaitTime = 0, 0
	}
	insts, meta, err := m.Registry.Instances(ctx, q)
	return insts, meta, m.wrap(err)
}

func (m *mutant) Register(ctx context.Context, r beacon.Registration) error {
	m.mu.Lock()
	old, ok := m.regs[r.ID]
	m.regs[r.ID] = r
	m.mu.Unlock()
	if ok && m.flaw == "register-keeps-old-checks" {
		// What an agent does without replace-existing-checks.
		r.Checks = mergeChecks(old, r)
	}
	return m.wrap(m.Registry.Register(ctx, r))
}

// mergeChecks returns r's checks followed by those of old that r no longer
// lists, all with explicit IDs.
func mergeChecks(old, r beacon.Registration) []beacon.Check {
	var out []beacon.Check
	seen := map[string]bool{}
	for _, reg := range []beacon.Registration{r, old} {
		for i, id := range reg.CheckIDs() {
			if !seen[id] {
				seen[id] = true
				c := reg.Checks[i]
				c.ID = id
				out = append(out, c)
			}
		}
	}
	return out
}

func (m *mutant) Deregister(ctx context.Context, id string) error {
	m.mu.Lock()
	_, known := m.regs[id]
	delete(m.regs, id)
	m.mu.Unlock()
	if !known && m.flaw == "deregister-unknown-fails" {
		// A backend that keeps books and trusts them over the agent.
		return fmt.Errorf("mutant: deregister %q: %w", id, beacon.ErrNotFound)
	}
	return m.wrap(m.Registry.Deregister(ctx, id))
}

func (m *mutant) UpdateTTL(ctx context.Context, checkID string, status beacon.Health, output string) error {
	return m.wrap(m.Registry.UpdateTTL(ctx, checkID, status, output))
}

// wrap loses every error's type for the "errors-flattened" flaw.
func (m *mutant) wrap(err error) error {
	if err != nil && m.flaw == "errors-flattened" {
		return errors.New(err.Error())
	}
	return err
}

// mutants maps each flaw to a subtest that must fail because of it, under
// TestMutant (Run, real agents) or TestHostileMutant (RunHostile, fakes).
var mutants = []struct {
	test    string // TestMutant or TestHostileMutant
	flaw    string
	subtest string // -test.run pattern below test
	failing string // a subtest that must be reported failing
}{
	{"TestMutant", "lookup-includes-unhealthy", "TTL", "TestMutant/TTL/StatusReflected"},
	{"TestMutant", "lookup-ignores-tags", "Query", "TestMutant/Query/Tags"},
	{"TestMutant", "lookup-never-blocks", "Blocking", "TestMutant/Blocking/ReturnsAfterWait"},
	{"TestMutant", "lookup-never-blocks", "AgentRestart", "TestMutant/AgentRestart/OldIndexWaitsOut"},
	{"TestMutant", "register-keeps-old-checks", "Register", "TestMutant/Register/UpsertDropsChecks"},
	{"TestMutant", "deregister-unknown-fails", "Register", "TestMutant/Register/Deregister"},
	{"TestMutant", "errors-flattened", "Validation", "TestMutant/Validation/Register/EmptyID"},
	{"TestMutant", "errors-flattened", "TTL", "TestMutant/TTL/UnknownCheck"},
	{"TestMutant", "errors-flattened", "ACL", "TestMutant/ACL"},
	{"TestMutant", "token-dropped", "ACL", "TestMutant/ACL"},
	{"TestMutant", "tls-dropped", "TLS", "TestMutant/TLS"},
	{"TestHostileMutant", "lookup-includes-unhealthy", "PassingOnly", "TestHostileMutant/PassingOnly/Default"},
	{"TestHostileMutant", "deregister-unknown-fails", "Status", "TestHostileMutant/Status/404/Deregister"},
	{"TestHostileMutant", "errors-flattened", "Status", "TestHostileMutant/Status/403/Register"},
	{"TestHostileMutant", "errors-flattened", "MalformedAnswer/NoIndex", "TestHostileMutant/MalformedAnswer/NoIndex"},
	{"TestHostileMutant", "token-dropped", "Token", "TestHostileMutant/Token/OnlyInHeader/Instances"},
}

// newMutant is the factory both suites run against the mutant with flaw.
func newMutant(flaw string) registrytest.Factory {
	return func(t *testing.T, cfg consul.Config) beacon.Registry {
		switch flaw {
		case "token-dropped":
			cfg.Token = ""
		case "tls-dropped":
			cfg.TLS = consul.TLSConfig{}
		}
		c, err := consulhttp.New(cfg)
		if err != nil {
			t.Fatalf("consulhttp.New(%v) = %v, want nil", cfg.Addresses, err)
		}
		t.Cleanup(func() { c.Close() })
		return &mutant{Registry: c, flaw: flaw, regs: map[string]beacon.Registration{}}
	}
}

// TestMutant runs the suite against the mutant named by $REGISTRYTEST_MUTANT;
// TestSuiteCatchesMutants starts it in a child process.
func TestMutant(t *testing.T) {
	flaw := os.Getenv(mutantEnv)
	if flaw == "" {
		t.Skipf("run by TestSuiteCatchesMutants with $%s set", mutantEnv)
	}
	registrytest.Run(t, newMutant(flaw))
}

// TestHostileMutant runs the hostile-agent suite against the mutant named by
// $REGISTRYTEST_MUTANT; TestSuiteCatchesMutants starts it in a child process.
func TestHostileMutant(t *testing.T) {
	flaw := os.Getenv(mutantEnv)
	if flaw == "" {
		t.Skipf("run by TestSuiteCatchesMutants with $%s set", mutantEnv)
	}
	registrytest.RunHostile(t, newMutant(flaw))
}

func TestSuiteCatchesMutants(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("in a child process")
	}
	for _, m := range mutants {
		t.Run(m.test+"/"+m.flaw+"/"+m.subtest, func(t *testing.T) {
			if m.test == "TestMutant" {
				consultest.Binary(t) // the child process starts agents
			}
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+m.test+"$/^"+m.subtest+"$", "-test.v", "-test.timeout=2m")
			cmd.Env = append(os.Environ(), mutantEnv+"="+m.flaw)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("suite against mutant %q = %v, want a failing exit status\n%s", m.flaw, err, out)
			}
			if !strings.Contains(string(out), "--- FAIL: "+m.failing+" ") {
				t.Errorf("suite against mutant %q: %s not reported failing\n%s", m.flaw, m.failing, out)
			}
		})
	}
}
