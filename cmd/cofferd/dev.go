package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/storage/kms"
)

// devEnv lists the only COFFER_* variables cofferd dev reads: which region
// and account its ARNs name, and a fixed root access key (test suites).
// Everything else (COFFER_CONFIG, COFFER_DATA_DIR, COFFER_GRPC_ADDR, …) is a
// production node's setting, and dev mode, which gives every caller full
// access, must never pick one up from the environment.
var devEnv = []string{"COFFER_REGION", "COFFER_ACCOUNT_ID", "COFFER_ROOT_ACCESS_KEY_ID", "COFFER_ROOT_SECRET_ACCESS_KEY"}

// devMarker marks a data directory as cofferd dev's: dev mode refuses a
// directory holding a node's state without it.
const devMarker = ".coffer-dev"

// errNotDevData: the data directory holds state that cofferd dev did not
// create.
var errNotDevData = errors.New("holds a Coffer node's state that cofferd dev did not create (no " + devMarker + " marker); dev mode lets every caller in with full access, so it refuses to serve it: use cofferd server, or another directory")

const devUsage = `Usage: cofferd dev [flags]

Runs a throw-away region on this machine: one node, or --nodes N, or several
paired regions (--regions). Every call is let in with full access, so it
listens on loopback only. It reads no configuration file and, of the
environment, only:
  COFFER_REGION, COFFER_ACCOUNT_ID        the region and account in ARNs
  COFFER_ROOT_ACCESS_KEY_ID,
  COFFER_ROOT_SECRET_ACCESS_KEY           a fixed root access key (test suites)

Flags:
`

// runDev starts a throw-away region: one node by default, or --nodes N in
// this process with separate listeners and data directories. Data, keys and
// certificates live in a temporary directory removed on Ctrl-C, unless
// --data-dir names a dev data directory to keep.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg := defaultConfig()
	cfg.NodeID = "dev-1"
	cfg.Raft.Bootstrap = true
	cfg.LogLevel = "warn"
	cfg.RootCredentialsFile = ""
	// A dev region runs anywhere: keys it cannot lock in memory are a
	// warning, not a refusal to start.
	cfg.AllowNoMlock = true
	// Metrics only when asked for: a fixed default port would collide
	// between dev regions on one machine.
	cfg.MetricsAddr = ""

	fs := flag.NewFlagSet("cofferd dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, devUsage)
		fs.PrintDefaults()
	}
	nodes := fs.Int("nodes", 1, "number of nodes in the dev region (1 to 7)")
	regions := fs.String("regions", "", "comma-separated regions to start, each with --nodes nodes, paired with each other (like us-east-1,eu-west-1)")
	configFile := fs.String("config", "", "refused: cofferd dev reads no configuration file")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "gRPC API address, on loopback")
	fs.StringVar(&cfg.AWSAddr, "aws-addr", cfg.AWSAddr, "AWS API address, on loopback (empty: off)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "Prometheus /metrics and health endpoints address, on loopback (empty: off); node i of --nodes listens 10*i ports above")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "keep the data in this directory (made by cofferd dev) instead of a temporary one")
	fs.StringVar(&cfg.Region, "region", cfg.Region, "region name used in ARNs (env COFFER_REGION)")
	fs.StringVar(&cfg.AccountID, "account-id", cfg.AccountID, "12-digit account id used in ARNs (env COFFER_ACCOUNT_ID)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	for _, st := range settings {
		if v := getenv(st.env); v != "" && slices.Contains(devEnv, st.env) {
			if err := st.set(&cfg, v); err != nil {
				return usageError{fmt.Errorf("%s=%q: %w", st.env, v, err)}
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usageError{}
		}
		return usageError{err}
	}
	switch {
	case *configFile != "":
		return usageError{errors.New("cofferd dev reads no configuration file (--config): it runs a throw-away region with full access for every caller; run a configured node with cofferd server --config")}
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	case *nodes < 1 || *nodes > 7:
		return usageError{fmt.Errorf("--nodes %d: want 1 to 7", *nodes)}
	}
	if ignored := ignoredDevEnv(getenv); len(ignored) > 0 {
		fmt.Fprintf(stderr, "cofferd dev: ignoring %s (dev mode reads only %s)\n", strings.Join(ignored, ", "), strings.Join(devEnv, ", "))
	}
	for name, addr := range map[string]string{"--grpc-addr": cfg.GRPCAddr, "--aws-addr": cfg.AWSAddr, "--metrics-addr": cfg.MetricsAddr} {
		if addr == "" {
			continue
		}
		if host, _, err := net.SplitHostPort(addr); err != nil || !node.LoopbackHost(host) {
			return usageError{fmt.Errorf("%s %q: cofferd dev lets every caller in with full access, so it listens on loopback only (127.0.0.1, ::1 or localhost)", name, addr)}
		}
	}
	temporary := cfg.DataDir == ""
	if temporary {
		dir, err := os.MkdirTemp("", "coffer-dev-")
		if err != nil {
			return fmt.Errorf("dev: temp dir: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	if err := claimDevDataDir(cfg.DataDir); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	cfg.Seal.KeyFile = filepath.Join(cfg.DataDir, "root.key")
	if _, err := os.Stat(cfg.Seal.KeyFile); os.IsNotExist(err) {
		if err := kms.GenerateKeyFile(cfg.Seal.KeyFile); err != nil {
			return fmt.Errorf("dev: root key: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := newLogger(cfg, stderr)
	kept := "deleted when cofferd stops"
	if !temporary {
		kept = "kept"
	}
	creds := &devCredentials{id: cfg.RootAccessKeyID, secret: cfg.RootSecretAccessKey}
	if *regions != "" {
		return devRegions(ctx, cfg, splitList(*regions), *nodes, log, stdout, kept)
	}
	if *nodes == 1 {
		return serveWith(ctx, cfg, log, func(o *node.Options) {
			o.AllowAnonymous = true
			creds.capture(o)
		}, func(addr string) {
			eps := "  gRPC endpoint:  " + addr + "   (plaintext; grpcurl -plaintext " + addr + " list)\n"
			if cfg.AWSAddr != "" {
				eps += "  AWS endpoint:   http://" + cfg.AWSAddr + "   (aws --endpoint-url http://" + cfg.AWSAddr + " secretsmanager list-secrets)\n"
			}
			fmt.Fprintf(stdout, devBanner, "one node", cfg.Region, cfg.AccountID, eps,
				cfg.DataDir, kept, cfg.Seal.KeyFile, creds.String(), addr)
		})
	}
	return devRegion(ctx, cfg, *nodes, log, stdout, kept, creds)
}

// ignoredDevEnv lists the COFFER_* variables set in the environment that
// cofferd dev does not read.
func ignoredDevEnv(getenv func(string) string) []string {
	var out []string
	if getenv("COFFER_CONFIG") != "" {
		out = append(out, "COFFER_CONFIG")
	}
	for _, s := range settings {
		if getenv(s.env) != "" && !slices.Contains(devEnv, s.env) {
			out = append(out, s.env)
		}
	}
	return out
}

// claimDevDataDir makes dir cofferd dev's: a directory with its marker, or
// a new or empty one (which gets the marker). One that holds a node's state
// (state.db, raft/) without the marker is a real node's, and is refused.
func claimDevDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	marker := filepath.Join(dir, devMarker)
	if _, err := os.Lstat(marker); err == nil {
		return nil
	}
	for _, name := range []string{"state.db", "raft"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("data directory %s %w", dir, errNotDevData)
		}
	}
	return os.WriteFile(marker, []byte("This directory holds the data of a cofferd dev region (anonymous full access).\n"), 0o600)
}

const devBanner = `
Coffer dev region is running: %s, region %s, account %s.

%s
  Data:           %s (%s)
  Root key:       %s
%s

Try it from another terminal:
  export COFFER_ENDPOINT=%s
  go run ./cmd/coffer secrets create demo/db-password --value 's3cr3t'
  go run ./cmd/coffer secrets get demo/db-password
  go run ./cmd/coffer cluster status

Press Ctrl-C to stop.
`

// devRegion runs n nodes in this process. Node i listens on the gRPC port
// + 10*i, with its cluster port one above and its gossip port two above.
func devRegion(ctx context.Context, cfg Config, n int, log *slog.Logger, stdout io.Writer, kept string, creds *devCredentials) error {
	region, endpoints, err := startDevRegion(ctx, cfg, n, log, creds)
	if err != nil || region == nil {
		return err
	}
	defer region.Stop()
	fmt.Fprintf(stdout, devBanner, fmt.Sprintf("%d nodes", n), cfg.Region, cfg.AccountID, endpoints,
		cfg.DataDir, kept, cfg.Seal.KeyFile, creds.String(), region.Node(0).Addr())
	<-ctx.Done()
	return nil
}

// startDevRegion starts n nodes of cfg's region (node.StartRegion) and
// returns once they serve, with the banner's endpoint lines; a nil region
// and no error when ctx ended first. With cfg.Regions.WANAddr set, node i
// also listens for other regions on the gRPC port + 10*i + 3 and gossips on
// the WAN at + 4.
func startDevRegion(ctx context.Context, cfg Config, n int, log *slog.Logger, creds *devCredentials) (*node.Region, string, error) {
	host, portStr, err := net.SplitHostPort(cfg.GRPCAddr)
	if err != nil {
		return nil, "", err
	}
	basePort, err := strconv.Atoi(portStr)
	if err != nil || basePort == 0 {
		return nil, "", fmt.Errorf("dev --nodes needs a fixed --grpc-addr port, not %q", cfg.GRPCAddr)
	}
	awsHost, awsBase := "", 0
	if cfg.AWSAddr != "" {
		h, p, err := net.SplitHostPort(cfg.AWSAddr)
		if err != nil {
			return nil, "", err
		}
		awsHost = h
		awsBase, _ = strconv.Atoi(p)
	}
	ca, err := loadOrCreateCA(filepath.Join(cfg.DataDir, "tls"))
	if err != nil {
		return nil, "", err
	}
	cross := cfg.Regions.WANAddr != ""
	wanJoin := cfg.Regions.WANJoin
	cfg.Cluster.GossipKeyFile = filepath.Join(cfg.DataDir, "gossip.key")
	if _, err := os.Stat(cfg.Cluster.GossipKeyFile); os.IsNotExist(err) {
		if err := kms.GenerateKeyFile(cfg.Cluster.GossipKeyFile); err != nil {
			return nil, "", err
		}
	}
	gossipKey, err := kms.FileSeal{Path: cfg.Cluster.GossipKeyFile}.RootKey()
	if err != nil {
		return nil, "", err
	}
	region, err := node.StartRegion(ctx, node.RegionSpec{
		Nodes:        n,
		Dir:          cfg.DataDir,
		NodeID:       func(i int) string { return fmt.Sprintf("dev-%d", i+1) },
		Ports:        node.BasePorts(host, basePort, cross),
		CA:           ca,
		CertValidity: nodeValidity,
		GossipKey:    gossipKey,
		Options: func(m node.Member) (node.Options, error) {
			// The node's configuration is cfg with its own ports, so
			// everything else a flag or the environment set applies.
			nc := cfg
			nc.NodeID, nc.DataDir, nc.GRPCAddr = m.ID, m.DataDir, m.Ports.GRPC
			nc.Raft.BindAddr, nc.Raft.Bootstrap = m.Ports.Cluster, m.Index == 0
			nc.Cluster.GossipAddr, nc.Cluster.Join = m.Ports.Gossip, m.Join
			if cross {
				nc.Regions.BindAddr, nc.Regions.WANAddr, nc.Regions.WANJoin = m.Ports.Region, m.Ports.WAN, wanJoin
			}
			if cfg.AWSAddr != "" {
				nc.AWSAddr = net.JoinHostPort(awsHost, strconv.Itoa(awsBase+10*m.Index))
			}
			if cfg.MetricsAddr != "" {
				nc.MetricsAddr = offsetPort(cfg.MetricsAddr, 10*m.Index)
			}
			opts, err := buildNodeOptions(nc, log.With("node", nc.NodeID, "region", nc.Region), true)
			if err != nil {
				return opts, err
			}
			opts.AllowAnonymous = true
			creds.capture(&opts)
			// Fast membership changes suit a dev region on one machine.
			opts.Raft.Autopilot.Interval = 500 * time.Millisecond
			opts.Raft.Autopilot.StableFor = time.Second
			return opts, nil
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", nil
		}
		return nil, "", err
	}
	var endpoints strings.Builder
	for i := range n {
		m, nd := region.Member(i), region.Node(i)
		fmt.Fprintf(&endpoints, "  %s gRPC:     %s   AWS http://%s   cluster %s   gossip %s\n", m.ID, nd.Addr(), nd.AWSAddr(), m.Ports.Cluster, m.Ports.Gossip)
	}
	return region, endpoints.String(), nil
}

// devCredentials remembers the root access key a dev region was created
// with, to print it.
type devCredentials struct {
	mu         sync.Mutex
	id, secret string
}

func (c *devCredentials) capture(o *node.Options) {
	prev := o.OnRootCredentials
	o.OnRootCredentials = func(id, secret string) error {
		if prev != nil {
			if err := prev(id, secret); err != nil {
				return err
			}
		}
		c.mu.Lock()
		c.id, c.secret = id, secret
		c.mu.Unlock()
		return nil
	}
}

func (c *devCredentials) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == "" {
		return "  Credentials:    the region already had principals (see its root-credentials file)"
	}
	return fmt.Sprintf(`  Root access key (gRPC needs none in dev mode; AWS clients sign with it):
    COFFER_ACCESS_KEY_ID=%s
    COFFER_SECRET_ACCESS_KEY=%s
    AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s`, c.id, c.secret, c.id, c.secret)
}
