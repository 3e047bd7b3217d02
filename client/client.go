package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// Headers of Coffer's gRPC API (server.IndexHeader, server.MinIndexHeader,
// server.ConsistencyHeader).
const (
	indexHeader       = "x-coffer-index"
	minIndexHeader    = "x-coffer-min-index"
	consistencyHeader = "x-coffer-consistency"
)

// Region is one region's API endpoints (host:port of its nodes).
type Region struct {
	Name      string
	Endpoints []string
}

// Credentials authenticate the client: an access key (with a session token
// for temporary credentials), which signs every call with SigV4, or a
// client certificate (TLS.Certificates) alone.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// Retry is how a call is retried on a retryable answer (unavailable, no
// leader, timed out, throttled): each attempt goes to the next endpoint,
// after an exponential backoff with full jitter.
type Retry struct {
	// MaxAttempts bounds the attempts of one call; 0 means 8.
	MaxAttempts int
	// BaseDelay and MaxDelay bound the backoff; 0 means 50ms and 2s.
	BaseDelay, MaxDelay time.Duration
}

// Config configures a Client. Regions lists the regions nearest first;
// reads go to the first region that answers, and fall back to the next.
type Config struct {
	Regions     []Region
	Credentials Credentials
	// TLS, when set, secures the connections (and carries a client
	// certificate, if any); nil means plaintext, for loopback and tests.
	TLS   *tls.Config
	Retry Retry
	// CacheTTL bounds how long a cached value is served while the watch
	// stream is not following the region (disconnected, resynchronising);
	// 0 means 5 minutes. A negative value turns the cache off.
	CacheTTL time.Duration
	// Watch, when true, keeps the cache fresh with WatchSecrets; the
	// stream watches WatchPrefixes (every secret the caller may list when
	// empty).
	Watch         bool
	WatchPrefixes []string
	// CallTimeout bounds one attempt; 0 means 10s.
	CallTimeout time.Duration
	Logger      *slog.Logger
	// OnChange, when set, is called from the watch for every change it
	// delivers (after the cache evicted what it changed). It must not block.
	OnChange func(Change)
}

// Change is one change the watch delivered.
type Change struct {
	Name, ARN string
	Index     uint64
	Kind      string // SecretEventKind without its prefix: VERSION_ADDED, STAGE_MOVED…
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if len(c.Regions) == 0 {
		return errors.New("client: no region configured")
	}
	for _, r := range c.Regions {
		if len(r.Endpoints) == 0 {
			return fmt.Errorf("client: region %q has no endpoint", r.Name)
		}
	}
	if (c.Credentials.AccessKeyID == "") != (c.Credentials.SecretAccessKey == "") {
		return errors.New("client: an access key needs both its id and its secret")
	}
	if c.Credentials.AccessKeyID == "" && (c.TLS == nil || len(c.TLS.Certificates) == 0 && c.TLS.GetClientCertificate == nil) {
		return errors.New("client: no credentials: give an access key or a client certificate")
	}
	return nil
}

func (c *Config) defaults() {
	if c.Retry.MaxAttempts <= 0 {
		c.Retry.MaxAttempts = 8
	}
	if c.Retry.BaseDelay <= 0 {
		c.Retry.BaseDelay = 50 * time.Millisecond
	}
	if c.Retry.MaxDelay <= 0 {
		c.Retry.MaxDelay = 2 * time.Second
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 5 * time.Minute
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// endpoint is one node's connection.
type endpoint struct {
	region string
	addr   string
	conn   *grpc.ClientConn
	api    cofferv1.SecretsManagerServiceClient
	watch  cofferv1.WatchServiceClient
}

// Client reads secrets. It is safe for concurrent use; Close releases it.
type Client struct {
	cfg       Config
	endpoints []*endpoint // nearest region first

	mu      sync.Mutex
	current int // the endpoint that answered last
	closed  bool

	cache  *cache
	stats  counters
	cancel context.CancelFunc
	done   chan struct{}
}

// New connects (lazily) to every endpoint and, when cfg.Watch is set,
// starts the watch that keeps the cache fresh.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	c := &Client{cfg: cfg, cache: newCache(), done: make(chan struct{})}
	for _, r := range cfg.Regions {
		var creds *grpcsig.Credentials
		if cfg.Credentials.AccessKeyID != "" {
			creds = &grpcsig.Credentials{AccessKeyID: cfg.Credentials.AccessKeyID, SecretAccessKey: cfg.Credentials.SecretAccessKey,
				SessionToken: cfg.Credentials.SessionToken, Region: r.Name}
		}
		for _, addr := range r.Endpoints {
			var opts []grpc.DialOption
			if creds != nil {
				opts = append(opts, creds.DialOptions()...)
			}
			if cfg.TLS != nil {
				opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS)))
			} else {
				opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
			}
			cc, err := grpc.NewClient(addr, opts...)
			if err != nil {
				_ = c.Close()
				return nil, fmt.Errorf("client: endpoint %s: %w", addr, err)
			}
			c.endpoints = append(c.endpoints, &endpoint{region: r.Name, addr: addr, conn: cc, api: cofferv1.NewSecretsManagerServiceClient(cc),
				watch: cofferv1.NewWatchServiceClient(cc)})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if cfg.Watch && cfg.CacheTTL > 0 {
		go c.watch(ctx)
	} else {
		close(c.done)
	}
	return c, nil
}

// Close stops the watch and closes the connections.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	var errs []error
	for _, e := range c.endpoints {
		errs = append(errs, e.conn.Close())
	}
	return errors.Join(errs...)
}

// pick returns the endpoint to try at attempt n of a call: the one that
// answered last, then the next ones in preference order.
func (c *Client) pick(n int) (int, *endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := (c.current + n) % len(c.endpoints)
	return i, c.endpoints[i]
}

// answered records that endpoint i answered; calls go there first. After
// a failover to another region the client drifts back to a nearer
// endpoint only when the current one fails.
func (c *Client) answered(i int) {
	c.mu.Lock()
	c.current = i
	c.mu.Unlock()
}

// call runs fn against endpoints until it succeeds, fails for good, or
// runs out of attempts, with backoff between attempts.
func (c *Client) call(ctx context.Context, fn func(ctx context.Context, e *endpoint) error) error {
	var last error
	for n := range c.cfg.Retry.MaxAttempts {
		if n > 0 {
			c.stats.retries.Add(1)
			d := min(c.cfg.Retry.MaxDelay, c.cfg.Retry.BaseDelay<<min(n-1, 20))
			t := time.NewTimer(rand.N(d) + d/2)
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(ctx.Err(), last)
			case <-t.C:
			}
		}
		i, e := c.pick(n)
		actx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		err := asError(fn(actx, e))
		cancel()
		if err == nil {
			c.answered(i)
			return nil
		}
		last = err
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		c.cfg.Logger.Debug("coffer call failed; trying the next endpoint", "endpoint", e.addr, "err", err)
	}
	return fmt.Errorf("%w after %d attempts: %w", ErrUnavailable, c.cfg.Retry.MaxAttempts, last)
}

// Secret is one version of a secret's value.
type Secret struct {
	Name          string
	ARN           string
	VersionID     string
	VersionStages []string
	String        string // SecretString, when the value is text
	Binary        []byte // SecretBinary, when it is bytes
	CreatedDate   time.Time
	// Index is the Raft index the answer reflects (in its region).
	Index  uint64
	Region string
	// Fetched is when the region answered. Stale is set on a cached copy
	// returned because no endpoint answered (the last good value).
	Fetched time.Time
	Stale   bool
}

// GetOption narrows GetSecretValue to a version or a stage, or skips the cache.
type GetOption func(*getOptions)

type getOptions struct {
	req     *cofferv1.GetSecretValueRequest
	refresh bool
}

// VersionID asks for one version by id.
func VersionID(id string) GetOption {
	return func(o *getOptions) { o.req.VersionId = id }
}

// VersionStage asks for the version carrying a staging label.
func VersionStage(stage string) GetOption {
	return func(o *getOptions) { o.req.VersionStage = stage }
}

// Refresh reads from the region even when the cache holds a fresh copy
// (and stores the answer).
func Refresh() GetOption {
	return func(o *getOptions) { o.refresh = true }
}

// GetSecretValue returns a version of secret id (AWSCURRENT unless an
// option says otherwise), from the cache when it holds a fresh copy.
// When every endpoint fails and the cache holds a copy of any age, that
// copy is returned and counted stale.
func (c *Client) GetSecretValue(ctx context.Context, id string, opts ...GetOption) (*Secret, error) {
	o := getOptions{req: &cofferv1.GetSecretValueRequest{SecretId: id}}
	for _, opt := range opts {
		opt(&o)
	}
	req := o.req
	key := cacheKey{id: id, version: req.GetVersionId(), stage: req.GetVersionStage()}
	useCache := c.cfg.CacheTTL > 0
	if useCache && !o.refresh {
		if s, ok := c.cache.fresh(key, c.cfg.CacheTTL); ok {
			c.stats.hits.Add(1)
			return s, nil
		}
		c.stats.misses.Add(1)
	}
	gen := c.cache.generation()
	var out *Secret
	err := c.call(ctx, func(ctx context.Context, e *endpoint) error {
		var hdr metadata.MD
		resp, err := e.api.GetSecretValue(ctx, req, grpc.Header(&hdr))
		if err != nil {
			return err
		}
		out = &Secret{Name: resp.GetName(), ARN: resp.GetArn(), VersionID: resp.GetVersionId(), VersionStages: resp.GetVersionStages(),
			Binary: resp.GetSecretBinary(), Region: e.region, Fetched: time.Now()}
		if resp.SecretString != nil {
			out.String = resp.GetSecretString()
		}
		if resp.GetCreatedDate() != nil {
			out.CreatedDate = resp.GetCreatedDate().AsTime()
		}
		if v := hdr.Get(indexHeader); len(v) > 0 {
			out.Index, _ = strconv.ParseUint(v[0], 10, 64)
		}
		return nil
	})
	if err != nil {
		if useCache && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrAccessDenied) && !errors.Is(err, ErrInvalidRequest) {
			if s, ok := c.cache.any(key); ok {
				c.stats.stale.Add(1)
				c.cfg.Logger.Warn("serving a cached secret: coffer is unreachable", "secret", id, "err", err)
				stale := *s
				stale.Stale = true
				return &stale, nil
			}
		}
		return nil, err
	}
	if useCache {
		c.cache.put(key, out, gen)
	}
	return out, nil
}
