package load

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Target is a system under test, connected.
type Target interface {
	// Client returns the client for worker i; workers that share a
	// connection share a client.
	Client(i int) Client
	// Conns is the number of connections opened.
	Conns() int
	// Ready reports whether every endpoint serves requests.
	Ready(ctx context.Context) error
	// ErrorType names the kind of a failed operation for the report, such
	// as "ServiceUnavailable" or "DeadlineExceeded".
	ErrorType(err error) string
	Close() error
}

// Client is one connection's view of the system under test.
type Client interface {
	// Create makes key exist with value; an existing key is success.
	Create(ctx context.Context, key string, value []byte) error
	// Put writes a new value to an existing key.
	Put(ctx context.Context, key string, value []byte) error
	// Get reads key's value and reports its size.
	Get(ctx context.Context, key string) (int, error)
}

// Open connects to cfg's target.
func Open(cfg Config) (Target, error) {
	switch cfg.Target {
	case TargetCoffer:
		return openCoffer(cfg)
	case TargetEtcd:
		return openEtcd(cfg)
	}
	return nil, fmt.Errorf("unknown target %q", cfg.Target)
}

// connLayout spreads clients over endpoints round-robin and gives each
// group of up to perConn clients on one endpoint one connection: client i
// uses endpoint i mod E, and on that endpoint the connection of its rank
// divided by perConn. 64 clients, 3 endpoints and 8 per connection make 9
// connections (3 per endpoint).
type connLayout struct {
	endpoint []int // endpoint index of each connection
	conn     []int // connection index of each client
}

func layout(endpoints, clients, perConn int) connLayout {
	var l connLayout
	first := make([]int, endpoints) // index of each endpoint's first connection
	perEndpoint := make([]int, endpoints)
	for i := range clients {
		perEndpoint[i%endpoints]++
	}
	for e := range endpoints {
		first[e] = len(l.endpoint)
		n := max(1, (perEndpoint[e]+perConn-1)/perConn)
		for range n {
			l.endpoint = append(l.endpoint, e)
		}
	}
	for i := range clients {
		e, rank := i%endpoints, i/endpoints
		l.conn = append(l.conn, first[e]+rank/perConn)
	}
	return l
}

// WaitReady polls t until every endpoint serves requests or within runs out.
func WaitReady(ctx context.Context, t Target, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		attempt, done := context.WithTimeout(ctx, 2*time.Second)
		last = t.Ready(attempt)
		done()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w", within, errors.Join(last, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
