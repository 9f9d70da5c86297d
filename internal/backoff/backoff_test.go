package backoff

import (
	"context"
	"testing"
	"time"
)

func TestJitterBounds(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 3, time.Millisecond, 10 * time.Second} {
		for range 1000 {
			if got := Jitter(d); got < d/2 || got > d {
				t.Fatalf("Jitter(%v) = %v, want within [%v, %v]", d, got, d/2, d)
			}
			if got := UpTo(d); got < 0 || got > d {
				t.Fatalf("UpTo(%v) = %v, want within [0, %v]", d, got, d)
			}
		}
	}
}

func TestBackoffDoublesToCapAndResets(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 800 * time.Millisecond}
	for i, nominal := range []time.Duration{100, 200, 400, 800, 800} {
		nominal *= time.Millisecond
		if got := b.Next(); got < nominal/2 || got > nominal {
			t.Fatalf("Next() #%d = %v, want within [%v, %v]", i+1, got, nominal/2, nominal)
		}
	}
	b.Reset()
	if got := b.Next(); got > 100*time.Millisecond {
		t.Fatalf("Next() after Reset = %v, want at most 100ms", got)
	}
	var zero Backoff
	if got := zero.Next(); got < 50*time.Millisecond || got > 100*time.Millisecond {
		t.Fatalf("zero Backoff Next() = %v, want within [50ms, 100ms]", got)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep(cancelled, 1h) = true, want false")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep(background, 1ms) = false, want true")
	}
}
