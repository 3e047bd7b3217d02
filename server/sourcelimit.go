package server

import (
	"net"
	"sync"
	"time"
)

// SourceLimiter rate-limits the requests of sources that fail to
// authenticate: each source (an IPv4 address, or the /64 of an IPv6
// address, which one host usually owns whole) has a token bucket that only
// refusals before authentication spend — a bad signature, an unknown key,
// no credentials, a request that is not a request. Once a source's bucket
// is empty, its requests are refused before they are read or decoded,
// until it refills. A source whose requests authenticate never spends a
// token, so no amount of failing traffic from elsewhere slows it; a shared
// address (NAT) is one source, whose burst should allow for that.
//
// Its methods are safe for concurrent use and do nothing on a nil
// SourceLimiter (no limit).
type SourceLimiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int // sources tracked; beyond it, one shared bucket
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*tokenBucket
	shared  tokenBucket // for sources past max
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

// maxTrackedSources bounds a SourceLimiter's memory: a flood from more
// sources than this shares one bucket.
const maxTrackedSources = 16384

// NewSourceLimiter returns a limiter that lets each source fail perSecond
// times a second after a burst of burst failures; nil (no limit) when
// perSecond is negative or zero.
func NewSourceLimiter(perSecond float64, burst int) *SourceLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &SourceLimiter{rate: perSecond, burst: float64(max(burst, 1)), max: maxTrackedSources, now: time.Now,
		buckets: map[string]*tokenBucket{}}
}

// sourceOf is the source an address counts as.
func sourceOf(addr string) string {
	host := hostOf(addr)
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// bucket returns src's bucket refilled to now; l.mu is held.
func (l *SourceLimiter) bucket(src string, now time.Time) *tokenBucket {
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= l.max {
			l.forgetFull(now)
		}
		if len(l.buckets) >= l.max {
			b = &l.shared
		} else {
			b = &tokenBucket{tokens: l.burst, at: now}
			l.buckets[src] = b
		}
	}
	if b.at.IsZero() {
		b.tokens, b.at = l.burst, now
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	return b
}

// forgetFull drops the sources whose bucket has refilled: they are as if
// never seen. l.mu is held.
func (l *SourceLimiter) forgetFull(now time.Time) {
	for src, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, src)
		}
	}
}

// Throttled reports whether the source at addr has used up its failures:
// its request is to be refused before it is read.
func (l *SourceLimiter) Throttled(addr string) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	src := sourceOf(addr)
	if _, ok := l.buckets[src]; !ok && len(l.buckets) < l.max {
		return false // never failed, or refilled and forgotten
	}
	return l.bucket(src, l.now()).tokens < 1
}

// Fail spends one of the source's tokens: a request from addr was refused
// before it authenticated.
func (l *SourceLimiter) Fail(addr string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(sourceOf(addr), l.now())
	b.tokens = max(0, b.tokens-1)
}
