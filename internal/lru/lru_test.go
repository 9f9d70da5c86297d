package lru

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestEvictsUnusedFirst(t *testing.T) {
	var evicted []string
	m := New[string, int](3, func(k string, _ int) { evicted = append(evicted, k) })
	for i, k := range []string{"a", "b", "c"} {
		if v, added := m.Add(k, i); !added || v != i {
			t.Fatalf("Add(%q, %d) = %d, %v, want %d, true", k, i, v, added, i)
		}
	}
	// Adding "d" clears every mark in the first pass and evicts one; read
	// "a" afterwards, then add "e": the clock must spare "a".
	m.Add("d", 3)
	if len(evicted) != 1 || m.Len() != 3 {
		t.Fatalf("after a fourth Add: evicted %v, Len %d, want one evicted and 3", evicted, m.Len())
	}
	if _, ok := m.Get("a"); !ok {
		evicted = nil // "a" was the first victim; read another survivor
		for _, k := range []string{"b", "c"} {
			if _, ok := m.Get(k); ok {
				m.Add("e", 4)
				if slices.Contains(evicted, k) {
					t.Fatalf("Add evicted %q, read since the last pass; evicted %v", k, evicted)
				}
				return
			}
		}
		t.Fatal("no survivor of the first eviction")
	}
	m.Add("e", 4)
	if slices.Contains(evicted, "a") {
		t.Fatalf("Add evicted \"a\", read since the last pass; evicted %v", evicted)
	}
}

func TestAddKeepsThePresentValue(t *testing.T) {
	m := New[string, int](2, nil)
	m.Add("a", 1)
	if v, added := m.Add("a", 2); added || v != 1 {
		t.Fatalf("Add(\"a\", 2) over 1 = %d, %v, want 1, false", v, added)
	}
	if v, ok := m.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(\"a\") = %d, %v, want 1, true", v, ok)
	}
	if _, ok := m.Get("zz"); ok {
		t.Fatal("Get of an absent key reported it present")
	}
}

func TestBoundAndClear(t *testing.T) {
	var mu sync.Mutex
	gone := map[string]bool{}
	m := New[string, int](8, func(k string, _ int) { mu.Lock(); gone[k] = true; mu.Unlock() })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				k := fmt.Sprint(g, "-", i)
				m.Add(k, i)
				m.Get(k)
				if n := m.Len(); n > 8 {
					t.Errorf("Len() = %d, want at most 8", n)
				}
			}
		}()
	}
	wg.Wait()
	if len(gone) != 400-8 {
		t.Fatalf("evicted %d, want %d", len(gone), 400-8)
	}
	m.Clear()
	if m.Len() != 0 || len(gone) != 400 {
		t.Fatalf("after Clear: Len %d, evicted %d, want 0 and 400", m.Len(), len(gone))
	}
}

func BenchmarkGet(b *testing.B) {
	m := New[string, int](1024, nil)
	m.Add("svc", 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := m.Get("svc"); !ok {
			b.Fatal("missing")
		}
	}
}
