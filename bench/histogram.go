package bench

import (
	"math/bits"
	"time"
)

// histogram counts latencies in microseconds in log-linear buckets: exact up
// to 64µs, then 32 buckets per power of two (about 3% relative error), up to
// 2^26µs (67s); larger values land in the last bucket. Recording is a few
// instructions and never allocates, so every receiver can keep its own and
// they are merged once at the end.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64
}

const (
	histSubBits = 5
	histMaxExp  = 26
	histBuckets = (histMaxExp - histSubBits + 1) << histSubBits
)

func histIndex(us uint64) int {
	if us < 2<<histSubBits {
		return int(us)
	}
	shift := bits.Len64(us) - histSubBits - 1
	i := (shift+1)<<histSubBits + int(us>>shift) - 1<<histSubBits
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper is the largest value that lands in bucket i.
func histUpper(i int) uint64 {
	if i < 2<<histSubBits {
		return uint64(i)
	}
	shift := i>>histSubBits - 1
	mant := uint64(i&(1<<histSubBits-1) + 1<<histSubBits)
	return (mant+1)<<shift - 1
}

func (h *histogram) record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.counts[histIndex(us)]++
	h.n++
	if us > h.max {
		h.max = us
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the value at quantile q (0 < q <= 1), rounded up to its
// bucket's upper bound and capped at the largest value seen.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histUpper(i), h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}
