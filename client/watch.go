package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// watch follows WatchSecrets on the preferred endpoint that answers,
// resuming from the last index it processed after a disconnect (on any
// endpoint of the same region), and evicting what each event changes.
func (c *Client) watch(ctx context.Context) {
	defer close(c.done)
	var (
		after   uint64
		since   uint64
		region  string
		attempt int
	)
	for ctx.Err() == nil {
		_, e := c.pick(attempt)
		if e.region != region {
			after = 0 // indexes are a region's own
		}
		err := c.follow(ctx, e, after, func(first uint64) {
			if after == 0 {
				since = first
			}
			region = e.region
			c.cache.follow(region, since)
			attempt = 0
		}, func(idx uint64) { after = idx })
		c.cache.unfollow()
		if ctx.Err() != nil {
			return
		}
		var ce *Error
		if errors.As(err, &ce) && ce.Metadata["watch"] == "resync" {
			c.stats.watchResyncs.Add(1)
			c.cache.flush()
			after = 0
			continue
		}
		c.cfg.Logger.Debug("coffer watch interrupted; resuming", "endpoint", e.addr, "after_index", after, "err", err)
		attempt++
		d := min(c.cfg.Retry.MaxDelay, c.cfg.Retry.BaseDelay<<min(attempt, 20))
		select {
		case <-ctx.Done():
			return
		case <-time.After(rand.N(d) + d/2):
		}
	}
}

// follow runs one stream until it fails.
func (c *Client) follow(ctx context.Context, e *endpoint, after uint64, started func(first uint64), processed func(idx uint64)) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := e.watch.WatchSecrets(sctx, &cofferv1.WatchSecretsRequest{NamePrefixes: c.cfg.WatchPrefixes, AfterIndex: after})
	if err != nil {
		return asError(err)
	}
	first, err := st.Recv()
	if err != nil {
		return asError(err)
	}
	c.stats.watchConnects.Add(1)
	started(first.GetIndex())
	for {
		resp, err := st.Recv()
		if err != nil {
			return asError(err)
		}
		for _, ev := range resp.GetEvents() {
			c.stats.events.Add(1)
			c.stats.evictions.Add(uint64(c.cache.event(e.region, ev)))
			if c.cfg.OnChange != nil {
				c.cfg.OnChange(Change{Name: ev.GetName(), ARN: ev.GetArn(), Index: ev.GetIndex(),
					Kind: strings.TrimPrefix(ev.GetKind().String(), "SECRET_EVENT_KIND_")})
			}
		}
		processed(resp.GetIndex())
	}
}
