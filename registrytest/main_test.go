package registrytest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: Memory's
// blocked calls, the fake agents and every backend's connections end with
// their tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
