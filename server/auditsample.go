package server

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// RefusalSampler keeps refused requests from filling the audit log. A
// refusal is one the Gate answers without serving: an authentication
// failure or any other request refused before authorization, a request
// throttled for its source's failures, and an authorization denial. Such
// requests are keyed by who asked, from where, what and why (principal —
// "" when unauthenticated —, source address, protocol, operation, error
// type). In each interval the first refusal of a key is recorded in full,
// as before; later ones are only counted, and when the interval ends each
// key with a count gets one summary record ("suppressed": how many, and the
// first and last time). A flood from one source, or by one principal, thus
// costs two records per interval instead of one per request. Requests that
// are served are always recorded in full.
//
// Its methods are safe for concurrent use. A nil RefusalSampler samples
// nothing: every refusal is recorded in full.
type RefusalSampler struct {
	interval time.Duration
	max      int
	now      func() time.Time

	mu   sync.Mutex
	keys map[refusalKey]*refusalCount
}

// DefaultRefusalSampleInterval is a RefusalSampler's interval when
// NewRefusalSampler is given none.
const DefaultRefusalSampleInterval = 10 * time.Second

// maxSampledKeys bounds the sampler's memory; refusals of further keys in
// an interval are counted under one key whose source and principal are "*".
const maxSampledKeys = 16384

type refusalKey struct {
	principal, source, protocol, operation, errorType string
}

type refusalCount struct {
	suppressed  int
	first, last time.Time
}

// NewRefusalSampler returns a sampler with the given interval (zero:
// DefaultRefusalSampleInterval); nil when interval is negative (every
// refusal recorded in full).
func NewRefusalSampler(interval time.Duration) *RefusalSampler {
	if interval < 0 {
		return nil
	}
	if interval == 0 {
		interval = DefaultRefusalSampleInterval
	}
	return &RefusalSampler{interval: interval, max: maxSampledKeys, now: time.Now, keys: map[refusalKey]*refusalCount{}}
}

func keyOf(rec AuditRecord) refusalKey {
	return refusalKey{principal: rec.Principal, source: sourceOf(rec.SourceAddr), protocol: rec.Protocol,
		operation: rec.Operation, errorType: rec.ErrorType}
}

// admit reports whether rec, a refusal, is to be recorded in full: the
// first of its key in this interval. Otherwise it is counted. countOnly
// counts it even when it is the first (a throttled request, refused before
// anything about it was read).
func (s *RefusalSampler) admit(rec AuditRecord, countOnly bool) bool {
	if s == nil {
		return true
	}
	k := keyOf(rec)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.keys[k]
	if !ok && len(s.keys) >= s.max {
		k = refusalKey{principal: "*", source: "*", protocol: rec.Protocol, operation: "*", errorType: "*"}
		c, ok = s.keys[k]
	}
	if !ok {
		c = &refusalCount{}
		s.keys[k] = c
		if !countOnly {
			return true
		}
	}
	now := s.now()
	if c.suppressed == 0 {
		c.first = now
	}
	c.suppressed++
	c.last = now
	return false
}

// Run writes the summary records at the end of every interval until ctx
// ends, then once more for the last one.
func (s *RefusalSampler) Run(ctx context.Context, g *Gate) {
	if s == nil {
		return
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flush(g)
			return
		case <-t.C:
			s.flush(g)
		}
	}
}

// flush ends the interval: one summary record per key whose refusals were
// counted, and every key forgotten.
func (s *RefusalSampler) flush(g *Gate) {
	s.mu.Lock()
	keys := s.keys
	s.keys = map[refusalKey]*refusalCount{}
	s.mu.Unlock()
	if g == nil || g.Audit == nil {
		return
	}
	for k, c := range keys {
		if c.suppressed == 0 {
			continue
		}
		rec := AuditRecord{
			Time: time.Now().UTC(), Node: g.Node, Principal: k.principal, SourceAddr: k.source, Protocol: k.protocol,
			Operation: k.operation, Decision: "deny", Outcome: "error", ErrorType: k.errorType,
			Params: map[string]string{
				"suppressed":       strconv.Itoa(c.suppressed),
				"suppressed_first": c.first.UTC().Format(time.RFC3339Nano),
				"suppressed_last":  c.last.UTC().Format(time.RFC3339Nano),
			},
		}
		if err := g.Audit.Write(rec); err != nil {
			g.logger().Error("audit write of a refusal summary failed", "source", k.source, "principal", k.principal,
				"suppressed", c.suppressed, "err", err)
		}
	}
}
