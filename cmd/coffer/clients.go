package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cofferclient "github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/client/agent"
	"github.com/cofferhq/coffer/client/inject"
)

// `coffer agent` and `coffer exec`: long-running consumers of secrets,
// built on the client package (retries across the endpoints, the
// watch-fed cache). --endpoint may list several nodes, comma-separated.

// childExit ends coffer with the exit code of the command it ran, and no message.
type childExit struct{ code int }

func (e *childExit) Error() string { return "exit status " + strconv.Itoa(e.code) }

// clientConfig builds the client package's configuration from the global
// options, with the same transport rules as every other command.
func (o *options) clientConfig() (cofferclient.Config, error) {
	var cfg cofferclient.Config
	eps := strings.Split(o.endpoint, ",")
	cfg.Regions = []cofferclient.Region{{Name: o.region, Endpoints: eps}}
	id, secret, token, err := o.credentials()
	if err != nil {
		return cfg, err
	}
	cfg.Credentials = cofferclient.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: token}
	if o.secure() {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.certFile != "" {
			cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
			if err != nil {
				return cfg, fmt.Errorf("--cert-file/--key-file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return cfg, fmt.Errorf("--ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return cfg, fmt.Errorf("--ca-file %s: no PEM certificates found", o.caFile)
			}
			tc.RootCAs = pool
		}
		cfg.TLS = tc
	} else if id != "" && !o.insecure {
		for _, ep := range eps {
			if !loopbackEndpoint(ep) {
				return cfg, &usageError{msg: fmt.Sprintf("refusing to send credentials in plaintext to %s, which is not a loopback address: connect with TLS (--tls, --ca-file) or pass --insecure", ep)}
			}
		}
	}
	cfg.CallTimeout = o.timeout
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg, nil
}

func runAgent(l *leaf, args []string) error {
	port := l.fs.Int("port", agent.DefaultPort, "local `PORT` to listen on (loopback only)")
	ttl := l.fs.Duration("ttl", 300*time.Second, "how long a value is served while the watch is not following (the agent's ttl_seconds)")
	maxConn := l.fs.Int("max-conn", agent.DefaultMaxConn, "open connections allowed; one more is answered 429")
	tokenEnv := l.fs.String("token-env", strings.Join(agent.DefaultTokenEnv, ","), "comma-separated `VARS` the SSRF token is read from (file://PATH reads a file)")
	prefix := l.fs.String("path-prefix", agent.DefaultPathPrefix, "`PREFIX` of the path route")
	watch := l.fs.Bool("watch", true, "keep the cache fresh with WatchSecrets")
	cacheDir := l.fs.String("cache-dir", os.Getenv(agentCacheDirEnv), "`DIR` keeping every answer encrypted at rest, served after a restart while Coffer is unreachable (env "+agentCacheDirEnv+")")
	cacheKeyFile := l.fs.String("cache-key-file", "", "`FILE` holding the key of --cache-dir, at least 32 bytes, kept away from it (else env "+agent.CacheKeyEnv+", a value or file://PATH)")
	if _, err := l.parse(args); err != nil {
		return err
	}
	token, err := agent.Token(os.LookupEnv, strings.Split(*tokenEnv, ","))
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	var disk *agent.DiskCache
	if *cacheDir != "" {
		if disk, err = openAgentCache(*cacheDir, *cacheKeyFile); err != nil {
			return err
		}
	} else if *cacheKeyFile != "" {
		return &usageError{msg: "--cache-key-file needs --cache-dir"}
	}
	cfg, err := l.inv.opts.clientConfig()
	if err != nil {
		return err
	}
	cfg.Watch, cfg.CacheTTL = *watch, *ttl
	c, err := cofferclient.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	a, err := agent.New(c, agent.Config{Token: token, MaxConn: *maxConn, PathPrefix: *prefix, Disk: disk, Logger: cfg.Logger})
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))
	if err != nil {
		return err
	}
	fmt.Fprintf(l.inv.stderr, "coffer agent: serving on http://%s\n", lis.Addr())
	return a.Serve(l.inv.ctx, lis)
}

// agentCacheDirEnv sets --cache-dir.
const agentCacheDirEnv = "COFFER_AGENT_CACHE_DIR"

// openAgentCache opens the agent's cache at rest. Its key must not live in
// it: a copy of the directory would then carry what opens it.
func openAgentCache(dir, keyFile string) (*agent.DiskCache, error) {
	if keyFile != "" {
		absDir, err1 := filepath.Abs(dir)
		absKey, err2 := filepath.Abs(keyFile)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if rel, err := filepath.Rel(absDir, absKey); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return nil, &usageError{msg: fmt.Sprintf("--cache-key-file %s is inside --cache-dir %s: keep the key away from the cache it opens", keyFile, dir)}
		}
	}
	key, err := agent.CacheKey(os.LookupEnv, keyFile)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return agent.OpenDiskCache(dir, key)
}

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func runExec(l *leaf, args []string) error {
	var envs, templates repeated
	l.fs.Var(&envs, "env", "`NAME=SECRET[:JSON_KEY[:STAGE|VERSION]]` or NAME=<ECS valueFrom ARN>; repeatable")
	l.fs.Var(&templates, "template", "`IN:OUT[:MODE]` Go template rendered to OUT (mode default 0600); repeatable")
	allowMissing := l.fs.Bool("allow-missing", false, "set a variable whose JSON key is missing to \"\" instead of failing")
	restart := l.fs.Bool("restart-on-change", false, "restart the command when an injected value changes")
	signalOnly := l.fs.Bool("signal-only", false, "with --restart-on-change: rewrite the templates and send --signal instead of restarting")
	sigName := l.fs.String("signal", "TERM", "`SIGNAL` that stops the command for a restart (or is sent with --signal-only)")
	grace := l.fs.Duration("grace", 10*time.Second, "how long the command has to exit after the signal before SIGKILL")
	pos, err := l.parse(args, "COMMAND...")
	if err != nil {
		return err
	}
	cfg := inject.Config{Command: pos, AllowMissing: *allowMissing, RestartOnChange: *restart, SignalOnly: *signalOnly, Grace: *grace,
		Stdin: l.inv.stdin, Stdout: l.inv.stdout, Stderr: l.inv.stderr}
	for _, e := range envs {
		ref, err := inject.ParseEnv(e)
		if err != nil {
			return l.usageErrorf("%v", err)
		}
		cfg.Env = append(cfg.Env, ref)
	}
	for _, t := range templates {
		tpl, err := inject.ParseTemplate(t)
		if err != nil {
			return l.usageErrorf("%v", err)
		}
		cfg.Templates = append(cfg.Templates, tpl)
	}
	if cfg.Signal, err = parseSignal(*sigName); err != nil {
		return l.usageErrorf("--signal: %v", err)
	}
	ccfg, err := l.inv.opts.clientConfig()
	if err != nil {
		return err
	}
	cfg.Logger = ccfg.Logger
	kick := make(chan struct{}, 1)
	if *restart {
		ccfg.Watch = true
		ccfg.OnChange = func(cofferclient.Change) {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
	c, err := cofferclient.New(ccfg)
	if err != nil {
		return err
	}
	defer c.Close()
	code, err := inject.Run(l.inv.ctx, c, kick, cfg)
	if err != nil {
		return err
	}
	if code != 0 {
		return &childExit{code: code}
	}
	return nil
}

func parseSignal(name string) (syscall.Signal, error) {
	sigs := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP, "QUIT": syscall.SIGQUIT,
		"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "KILL": syscall.SIGKILL}
	if s, ok := sigs[strings.TrimPrefix(strings.ToUpper(name), "SIG")]; ok {
		return s, nil
	}
	return 0, errors.New("want TERM, INT, HUP, QUIT, USR1, USR2 or KILL")
}
