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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/storage/kms"
)

// runDev starts a throw-away region: one node by default, or --nodes N in
// this process with separate listeners and data directories. Data, keys and
// certificates live in a temporary directory removed on Ctrl-C.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	base := defaultConfig()
	base.NodeID = "dev-1"
	base.Raft.Bootstrap = true
	base.LogLevel = "warn"
	// A dev region runs anywhere: keys it cannot lock in memory are a
	// warning, not a refusal to start.
	base.AllowNoMlock = true
	// Placeholders until the data dir and key file are known.
	base.DataDir, base.Seal.KeyFile = "pending", "pending"

	fs := flag.NewFlagSet("cofferd dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", 1, "number of nodes in the dev region (1, 3 or 5)")
	regions := fs.String("regions", "", "comma-separated regions to start, each with --nodes nodes, paired with each other (like us-east-1,eu-west-1)")
	cfg, err := loadConfig(fs, base, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return usageError{}
	}
	if err != nil {
		return usageError{err}
	}
	if *nodes < 1 || *nodes > 7 {
		return usageError{fmt.Errorf("--nodes %d: want 1 to 7", *nodes)}
	}
	temporary := cfg.DataDir == "pending"
	if temporary {
		dir, err := os.MkdirTemp("", "coffer-dev-")
		if err != nil {
			return fmt.Errorf("dev: temp dir: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("dev: data dir: %w", err)
	}
	if cfg.Seal.KeyFile == "pending" {
		cfg.Seal.KeyFile = filepath.Join(cfg.DataDir, "root.key")
		if _, err := os.Stat(cfg.Seal.KeyFile); os.IsNotExist(err) {
			if err := kms.GenerateKeyFile(cfg.Seal.KeyFile); err != nil {
				return fmt.Errorf("dev: root key: %w", err)
			}
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
			opts, err := nodeOptions(nc, log.With("node", nc.NodeID, "region", nc.Region))
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
	o.OnRootCredentials = func(id, secret string) {
		c.mu.Lock()
		c.id, c.secret = id, secret
		c.mu.Unlock()
		if prev != nil {
			prev(id, secret)
		}
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
