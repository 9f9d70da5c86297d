package consulhttp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every fake
// server is closed and every client's idle connections released.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
