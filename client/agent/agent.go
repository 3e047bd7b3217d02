package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/server/awserr"
)

// Defaults, as aws-secretsmanager-agent has them.
const (
	DefaultPort    = 2773
	DefaultMaxConn = 800
	// DefaultPathPrefix is the prefix of the path route (/v1/<id>).
	DefaultPathPrefix = "/v1/"
	// CacheAgeHeader, on an answer served from the cache because Coffer
	// was unreachable, is the age of the value in whole seconds.
	CacheAgeHeader = "X-Coffer-Cache-Age"
	// PingHeadroom is how many connections beyond MaxConn are left for
	// /ping, as aws-secretsmanager-agent leaves two for health checks.
	PingHeadroom = 2
)

// DefaultTokenHeaders are the headers that may carry the SSRF token.
var DefaultTokenHeaders = []string{"X-Aws-Parameters-Secrets-Token", "X-Vault-Token"}

// DefaultTokenEnv are the environment variables the token is read from,
// the first set one winning; a value "file://PATH" names a file holding it.
var DefaultTokenEnv = []string{"AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"}

// Config configures an Agent.
type Config struct {
	// Token is the SSRF token every request must carry (Token, below).
	Token        string
	TokenHeaders []string
	PathPrefix   string
	// MaxConn bounds the open connections; one over it is answered 429.
	MaxConn int
	// Disk, when set, keeps every answer encrypted at rest and serves it
	// when Coffer is unreachable and the memory cache has no copy (after
	// a restart): see OpenDiskCache.
	Disk   *DiskCache
	Logger *slog.Logger
}

// Token returns the SSRF token from the first of envs that is set (a
// value file://PATH is read from PATH, trimmed), or an error when none is:
// the agent does not run without one.
func Token(lookup func(string) (string, bool), envs []string) (string, error) {
	for _, name := range envs {
		v, ok := lookup(name)
		if !ok || v == "" {
			continue
		}
		if path, isFile := strings.CutPrefix(v, "file://"); isFile {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", fmt.Errorf("SSRF token file from %s: %w", name, err)
			}
			v = strings.TrimSpace(string(b))
			if v == "" {
				return "", fmt.Errorf("SSRF token file %s (from %s) is empty", path, name)
			}
		}
		return v, nil
	}
	return "", fmt.Errorf("no SSRF token: set one of %s (a value file://PATH reads it from a file)", strings.Join(envs, ", "))
}

// Agent serves secrets over local HTTP.
type Agent struct {
	cfg  Config
	c    *client.Client
	open atomic.Int64 // open connections
}

// New returns an agent reading through c.
func New(c *client.Client, cfg Config) (*Agent, error) {
	if cfg.Token == "" {
		return nil, errors.New("agent: an SSRF token is required")
	}
	if len(cfg.TokenHeaders) == 0 {
		cfg.TokenHeaders = DefaultTokenHeaders
	}
	if cfg.PathPrefix == "" {
		cfg.PathPrefix = DefaultPathPrefix
	}
	if !strings.HasPrefix(cfg.PathPrefix, "/") || !strings.HasSuffix(cfg.PathPrefix, "/") {
		return nil, fmt.Errorf("agent: path prefix %q must start and end with /", cfg.PathPrefix)
	}
	if cfg.MaxConn <= 0 {
		cfg.MaxConn = DefaultMaxConn
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, c: c}, nil
}

// Server returns the HTTP server; it counts connections for MaxConn.
func (a *Agent) Server() *http.Server {
	return &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				a.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				a.open.Add(-1)
			}
		},
	}
}

// Serve serves on l until ctx ends.
func (a *Agent) Serve(ctx context.Context, l net.Listener) error {
	srv := a.Server()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// httpError is an answer other than 200, with the AWS-style body.
type httpError struct {
	status int
	typ    string
	msg    string
}

func (a *Agent) fail(w http.ResponseWriter, e httpError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.typ, "message": e.msg})
}

// ServeHTTP checks in the order aws-secretsmanager-agent does: the
// connection limit, forwarding and the SSRF token, the method, then the
// route. /ping is the health check, and as in aws-secretsmanager-agent
// (server.rs validate_token, validate_max_conn) it needs no token, is not
// refused for X-Forwarded-For, and has PingHeadroom connections beyond
// MaxConn, so that a container or load balancer health check, which
// cannot carry the token, still answers while the agent is at its limit.
// It reveals nothing but that the agent runs; it must still be a GET.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ping := r.URL.Path == "/ping"
	limit := int64(a.cfg.MaxConn)
	if ping {
		limit += PingHeadroom
	}
	if a.open.Load() > limit {
		a.fail(w, httpError{http.StatusTooManyRequests, "ConnectionLimitExceeded", "Connection limit exceeded"})
		return
	}
	if !ping {
		if r.Header.Get("X-Forwarded-For") != "" {
			a.fail(w, httpError{http.StatusBadRequest, "BadRequest", "Forwarded requests are refused"})
			return
		}
		if !a.tokenOK(r) {
			a.fail(w, httpError{http.StatusForbidden, "AccessDenied", "Bad Token"})
			return
		}
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		a.fail(w, httpError{http.StatusMethodNotAllowed, "MethodNotAllowed", "Method not allowed"})
		return
	}
	q := r.URL.Query()
	switch path := r.URL.Path; {
	case ping:
		_, _ = w.Write([]byte("healthy"))
	case path == "/secretsmanager/get":
		a.get(w, r, q.Get("secretId"), q)
	case strings.HasPrefix(path, a.cfg.PathPrefix):
		a.get(w, r, strings.TrimPrefix(path, a.cfg.PathPrefix), q)
	default:
		a.fail(w, httpError{http.StatusNotFound, "NotFound", "Not found"})
	}
}

func (a *Agent) tokenOK(r *http.Request) bool {
	for _, h := range a.cfg.TokenHeaders {
		if v := r.Header.Get(h); v != "" && constantTimeEqual(v, a.cfg.Token) {
			return true
		}
	}
	return false
}

func constantTimeEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := range len(a) {
		d |= a[i] ^ b[i]
	}
	return d == 0
}

// getSecretValueOutput is GetSecretValue's JSON answer, as the agent gives it.
type getSecretValueOutput struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionID     string   `json:"VersionId"`
	SecretString  *string  `json:"SecretString,omitempty"`
	SecretBinary  []byte   `json:"SecretBinary,omitempty"`
	VersionStages []string `json:"VersionStages"`
	CreatedDate   float64  `json:"CreatedDate"`
}

func (a *Agent) get(w http.ResponseWriter, r *http.Request, id string, q map[string][]string) {
	if id == "" {
		a.fail(w, httpError{http.StatusBadRequest, "BadRequest", "secretId is required"})
		return
	}
	first := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	version, stage := first("versionId"), first("versionStage")
	var opts []client.GetOption
	if version != "" {
		opts = append(opts, client.VersionID(version))
	}
	if stage != "" {
		opts = append(opts, client.VersionStage(stage))
	}
	if v := first("refreshNow"); v != "" {
		refresh, err := strconv.ParseBool(v)
		if err != nil {
			a.fail(w, httpError{http.StatusBadRequest, "BadRequest", "refreshNow must be true or false"})
			return
		}
		if refresh {
			opts = append(opts, client.Refresh())
		}
	}
	s, err := a.c.GetSecretValue(r.Context(), id, opts...)
	if err != nil {
		var ce *client.Error
		switch {
		case errors.As(err, &ce) && ce.Type != "" && !errors.Is(err, client.ErrUnavailable):
			if errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrAccessDenied) {
				a.forget(id, version, stage) // never served again in an outage
			}
			a.fail(w, httpError{awserr.HTTPStatus(ce.Type), ce.Type, ce.Message})
		default:
			a.cfg.Logger.Warn("coffer agent: read failed", "secret", id, "err", err)
			a.fromDisk(w, id, version, stage)
		}
		return
	}
	out := getSecretValueOutput{ARN: s.ARN, Name: s.Name, VersionID: s.VersionID, VersionStages: s.VersionStages,
		CreatedDate: float64(s.CreatedDate.UnixMilli()) / 1000}
	if s.Binary != nil {
		out.SecretBinary = s.Binary
	} else {
		out.SecretString = &s.String
	}
	if s.Stale {
		w.Header().Set(CacheAgeHeader, age(s.Fetched))
	} else if a.cfg.Disk != nil {
		if err := a.cfg.Disk.store(diskEntry{ID: id, Version: version, Stage: stage, Answer: out, Fetched: s.Fetched}); err != nil {
			a.cfg.Logger.Error("coffer agent: could not write the cache at rest", "secret", id, "err", err)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func age(fetched time.Time) string {
	return strconv.Itoa(max(0, int(time.Since(fetched).Seconds())))
}

// fromDisk answers from the cache at rest while Coffer is unreachable,
// or 502 ConnectionError when it holds nothing (or a copy it refuses).
func (a *Agent) fromDisk(w http.ResponseWriter, id, version, stage string) {
	unreachable := httpError{http.StatusBadGateway, "ConnectionError", "Coffer is unreachable and no value of this secret is cached"}
	if a.cfg.Disk == nil {
		a.fail(w, unreachable)
		return
	}
	e, found, err := a.cfg.Disk.load(id, version, stage)
	switch {
	case err != nil:
		a.cfg.Logger.Error("coffer agent: refusing a cached copy", "secret", id, "err", err)
		if errors.Is(err, ErrCacheEntryRefused) {
			unreachable.msg = "Coffer is unreachable and the cached copy of this secret failed authentication (altered, or written with another key): it is not served"
		}
		a.fail(w, unreachable)
	case !found:
		a.fail(w, unreachable)
	default:
		a.cfg.Logger.Warn("coffer agent: serving the cache at rest: coffer is unreachable", "secret", id, "fetched", e.Fetched)
		w.Header().Set(CacheAgeHeader, age(e.Fetched))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e.Answer)
	}
}

func (a *Agent) forget(id, version, stage string) {
	if a.cfg.Disk == nil {
		return
	}
	if err := a.cfg.Disk.remove(id, version, stage); err != nil {
		a.cfg.Logger.Error("coffer agent: could not remove a cached copy", "secret", id, "err", err)
	}
}
