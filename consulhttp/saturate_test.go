package consulhttp

import (
	"math"
	"testing"
)

// TestSaturatingMul: a feed cap computed from a cap near the top of int64
// saturates instead of wrapping below it.
func TestSaturatingMul(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{
		{0, feedCapFactor, 0},
		{32 << 20, feedCapFactor, 256 << 20},
		{math.MaxInt64 / 8, 8, math.MaxInt64 / 8 * 8},
		{math.MaxInt64/8 + 1, 8, math.MaxInt64},
		{math.MaxInt64, feedGrowth, math.MaxInt64},
		{5, 0, 0},
	} {
		if got := saturatingMul(c.a, c.b); got != c.want {
			t.Errorf("saturatingMul(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
