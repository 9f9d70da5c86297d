package notify

import (
	"slices"
	"sync"
	"testing"
)

func TestSet(t *testing.T) {
	var s Set[int]
	if s.Any() {
		t.Error("Any() on an empty set = true")
	}
	s.Emit(0) // nobody listens: nothing happens
	var a, b []int
	stopA := s.Add(func(e int) { a = append(a, e) })
	stopB := s.Add(func(e int) { b = append(b, e) })
	s.Add(nil)() // a nil listener is no listener
	s.Emit(1)
	stopA()
	stopA() // twice is allowed
	s.Emit(2)
	if !slices.Equal(a, []int{1}) || !slices.Equal(b, []int{1, 2}) {
		t.Errorf("a heard %v, b %v; want [1] and [1 2]", a, b)
	}
	stopB()
	if s.Any() {
		t.Error("Any() after every stop = true")
	}
	var nilSet *Set[int]
	nilSet.Emit(3)
	if nilSet.Any() {
		t.Error("Any() on a nil set = true")
	}
}

// TestSetConcurrent: adding, stopping and emitting at once (run with
// -race).
func TestSetConcurrent(t *testing.T) {
	var s Set[int]
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				s.Add(func(int) {})()
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 100 {
				s.Emit(i)
			}
		}()
	}
	wg.Wait()
	if s.Any() {
		t.Error("listeners left after every stop")
	}
}

func TestEmitNoListenerAllocatesNothing(t *testing.T) {
	var s Set[struct{ a, b string }]
	if n := testing.AllocsPerRun(100, func() { s.Emit(struct{ a, b string }{"x", "y"}) }); n != 0 {
		t.Errorf("Emit with nobody listening allocated %v times", n)
	}
}
