package client

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The cache holds the answers of GetSecretValue by what was asked (id,
// version, stage). An entry is fresh while the watch follows its region
// from an index at or before the entry's (every change since would have
// evicted it), and otherwise for CacheTTL. An event evicts the entries of
// its secret that are older than it; a fetch that started before an
// eviction of its secret is not stored, so a change racing a read is
// never cached over.

type cacheKey struct{ id, version, stage string }

type cacheEntry struct {
	secret  *Secret
	fetched time.Time
}

type cache struct {
	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
	// evicted is the index of the last event seen for each secret name and
	// ARN, in the watched region; flushes counts whole-cache flushes.
	evicted map[string]uint64
	flushes uint64
	// following: the watch has every change in region after since.
	following bool
	region    string
	since     uint64
}

func newCache() *cache {
	return &cache{entries: map[cacheKey]cacheEntry{}, evicted: map[string]uint64{}}
}

func (c *cache) freshLocked(e cacheEntry, ttl time.Duration) bool {
	if c.following && e.secret.Region == c.region && e.secret.Index >= c.since {
		return true
	}
	return time.Since(e.fetched) < ttl
}

func (c *cache) fresh(k cacheKey, ttl time.Duration) (*Secret, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || !c.freshLocked(e, ttl) {
		return nil, false
	}
	return e.secret, true
}

// any returns an entry whatever its age.
func (c *cache) any(k cacheKey) (*Secret, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	return e.secret, ok
}

// generation is read before a fetch and handed to put.
func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushes
}

func (c *cache) put(k cacheKey, s *Secret, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.flushes {
		return
	}
	if s.Region == c.region && (c.evicted[s.Name] > s.Index || c.evicted[s.ARN] > s.Index) {
		return // a change after this answer was already seen
	}
	c.entries[k] = cacheEntry{secret: s, fetched: time.Now()}
}

// event evicts the entries of the event's secret that predate it, and
// reports how many.
func (c *cache) event(region string, ev *cofferv1.SecretEvent) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if region != c.region {
		return 0
	}
	c.evicted[ev.GetName()] = max(c.evicted[ev.GetName()], ev.GetIndex())
	c.evicted[ev.GetArn()] = max(c.evicted[ev.GetArn()], ev.GetIndex())
	n := 0
	for k, e := range c.entries {
		s := e.secret
		if (s.Name == ev.GetName() || s.ARN == ev.GetArn()) && (s.Region != region || s.Index < ev.GetIndex()) {
			delete(c.entries, k)
			n++
		}
	}
	return n
}

// follow records that the watch follows region from index since on.
func (c *cache) follow(region string, since uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if region != c.region {
		clear(c.evicted)
	}
	c.following, c.region, c.since = true, region, since
}

// unfollow: the stream broke; entries fall back to the TTL until it resumes.
func (c *cache) unfollow() {
	c.mu.Lock()
	c.following = false
	c.mu.Unlock()
}

// flush drops everything: the watch could not resume, so any entry may
// have missed a change.
func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	clear(c.evicted)
	c.flushes++
	c.following = false
}

func (c *cache) keys() []cacheKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Keys(c.entries))
}

// counters are the client's statistics.
type counters struct {
	hits, misses, stale, retries, evictions, watchConnects, watchResyncs, events atomic.Uint64
}

// Stats are the client's counters since New.
type Stats struct {
	// Hits and Misses count GetSecretValue answered from the cache or not.
	Hits, Misses uint64
	// Stale counts answers from the cache past their freshness because no
	// endpoint answered.
	Stale uint64
	// Retries counts attempts after the first.
	Retries uint64
	// Events counts watch events received; Evictions the cache entries
	// they evicted.
	Events, Evictions uint64
	// WatchConnects counts streams opened; WatchResyncs the times the
	// watch could not resume and the cache was flushed.
	WatchConnects, WatchResyncs uint64
	// Cached is how many entries the cache holds.
	Cached int
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(), Stale: c.stats.stale.Load(), Retries: c.stats.retries.Load(),
		Events: c.stats.events.Load(), Evictions: c.stats.evictions.Load(),
		WatchConnects: c.stats.watchConnects.Load(), WatchResyncs: c.stats.watchResyncs.Load(), Cached: len(c.cache.keys()),
	}
}
