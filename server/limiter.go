package server

import "time"

// limiter is a token bucket: rate tokens a second, at most burst saved up.
// Only the connection's reader uses it, so it needs no lock.
type limiter struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	// over counts refusals in the window that started at overSince.
	over      int
	overSince time.Time
}

// floodWindow is the span over which refusals are counted.
const floodWindow = 10 * time.Second

func newLimiter(rate float64, burst int, now time.Time) limiter {
	return limiter{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

func (l *limiter) allow(now time.Time) bool {
	l.tokens += now.Sub(l.last).Seconds() * l.rate
	l.last = now
	if l.tokens > l.burst {
		l.tokens = l.burst
	}
	if l.tokens < 1 {
		if now.Sub(l.overSince) > floodWindow {
			l.over, l.overSince = 0, now
		}
		l.over++
		return false
	}
	l.tokens--
	return true
}

// flooding reports a client that keeps sending while refused: it ignored
// more than five bursts' worth of rate_limited errors within floodWindow.
func (l *limiter) flooding() bool { return float64(l.over) > 5*l.burst }
