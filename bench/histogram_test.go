package bench

import (
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<20; us++ {
		i := histIndex(us)
		if i < prev || i > prev+1 {
			t.Fatalf("histIndex(%d) = %d after %d: buckets must be contiguous", us, i, prev)
		}
		if us > histUpper(i) {
			t.Fatalf("%dµs lands in bucket %d whose upper bound is %d", us, i, histUpper(i))
		}
		if i > 0 && us <= histUpper(i-1) {
			t.Fatalf("%dµs lands in bucket %d but fits bucket %d", us, i, i-1)
		}
		prev = i
	}
	if got := histIndex(1 << 40); got != histBuckets-1 {
		t.Fatalf("huge value lands in bucket %d, want the last (%d)", got, histBuckets-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var a, b histogram
	for i := 1; i <= 1000; i++ {
		a.record(time.Duration(i) * time.Microsecond)
	}
	b.record(5 * time.Second)
	a.merge(&b)
	tests := []struct {
		q        float64
		min, max time.Duration
	}{
		{0.5, 500 * time.Microsecond, 516 * time.Microsecond},
		{0.99, 990 * time.Microsecond, 1022 * time.Microsecond},
		{1, 5 * time.Second, 5 * time.Second},
	}
	for _, tt := range tests {
		if got := a.quantile(tt.q); got < tt.min || got > tt.max {
			t.Errorf("quantile(%v) = %v, want in [%v, %v]", tt.q, got, tt.min, tt.max)
		}
	}
	if a.n != 1001 {
		t.Errorf("n = %d, want 1001", a.n)
	}
}
