package registrytest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/beaconsd/beacon"
)

// concurrentRegistrations is how many instances register at once; half of
// them then deregister at once.
const concurrentRegistrations = 100

// testConcurrency checks that one backend serves many goroutines at once.
func (s suite) testConcurrency(t *testing.T) {
	t.Parallel()
	_, r := s.agent(t)
	ctx := testContext(t)

	all := make([]string, concurrentRegistrations)
	for i := range all {
		all[i] = fmt.Sprintf("crowd-%03d", i)
	}
	kept, gone := all[:len(all)/2], all[len(all)/2:]

	// parallel runs fn for every id, each on a goroutine of its own, all
	// released together.
	parallel := func(ids []string, fn func(id string)) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, id := range ids {
			wg.Go(func() {
				<-start
				fn(id)
			})
		}
		close(start)
		wg.Wait()
	}
	parallel(all, func(id string) {
		reg := beacon.Registration{ID: id, Service: "crowd", Port: 9000, Meta: map[string]string{"id": id}}
		if err := r.Register(ctx, reg); err != nil {
			t.Errorf("Register(%q) = %v, want nil", id, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	q := beacon.Query{Service: "crowd", IncludeUnhealthy: true}
	awaitIDs(t, ctx, r, q, all)

	parallel(gone, func(id string) {
		if err := r.Deregister(ctx, id); err != nil {
			t.Errorf("Deregister(%q) = %v, want nil", id, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	for _, in := range awaitIDs(t, ctx, r, q, kept) {
		if in.Meta["id"] != in.ID {
			t.Errorf("Instances(%s): instance %q has Meta %v, want id=%s: registrations mixed up", describe(q), in.ID, in.Meta, in.ID)
		}
	}
}
