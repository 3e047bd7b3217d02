package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage/kms"
)

// devRegions starts one dev region of n nodes per name, region k on the
// gRPC port + 100*k, all in one WAN pool, and pairs every two of them the
// way `coffer region pair` does.
func devRegions(ctx context.Context, cfg Config, names []string, n int, log *slog.Logger, stdout io.Writer, kept string) error {
	if len(names) < 2 {
		return usageError{fmt.Errorf("--regions %q: name at least two regions", strings.Join(names, ","))}
	}
	host, portStr, err := net.SplitHostPort(cfg.GRPCAddr)
	if err != nil {
		return err
	}
	basePort, err := strconv.Atoi(portStr)
	if err != nil || basePort == 0 {
		return fmt.Errorf("dev --regions needs a fixed --grpc-addr port, not %q", cfg.GRPCAddr)
	}
	wanKey := filepath.Join(cfg.DataDir, "wan.key")
	if _, err := os.Stat(wanKey); os.IsNotExist(err) {
		if err := kms.GenerateKeyFile(wanKey); err != nil {
			return err
		}
	}
	var all []*node.Region
	defer func() {
		for i := len(all) - 1; i >= 0; i-- {
			_ = all[i].Stop()
		}
	}()
	var banner strings.Builder
	var firstAddrs []string
	wan0 := net.JoinHostPort(host, strconv.Itoa(basePort+4))
	for k, name := range names {
		rc := cfg
		rc.Region = name
		rc.DataDir = filepath.Join(cfg.DataDir, name)
		rc.Seal.KeyFile = filepath.Join(rc.DataDir, "root.key") // every region has its own root key
		if err := os.MkdirAll(rc.DataDir, 0o700); err != nil {
			return err
		}
		if _, err := os.Stat(rc.Seal.KeyFile); os.IsNotExist(err) {
			if err := kms.GenerateKeyFile(rc.Seal.KeyFile); err != nil {
				return err
			}
		}
		rc.GRPCAddr = net.JoinHostPort(host, strconv.Itoa(basePort+100*k))
		if cfg.AWSAddr != "" {
			// Beside each node's other ports (gRPC +0 … WAN +4), so regions
			// 100 ports apart never collide.
			ah, _, err := net.SplitHostPort(cfg.AWSAddr)
			if err != nil {
				return err
			}
			rc.AWSAddr = net.JoinHostPort(ah, strconv.Itoa(basePort+100*k+5))
		}
		if cfg.MetricsAddr != "" {
			mh, _, err := net.SplitHostPort(cfg.MetricsAddr)
			if err != nil {
				return err
			}
			rc.MetricsAddr = net.JoinHostPort(mh, strconv.Itoa(basePort+100*k+6))
		}
		rc.Regions.WANAddr = "pending" // turns on the region ports in startDevRegion
		rc.Regions.WANKeyFile = wanKey
		rc.Regions.WANJoin = []string{wan0}
		creds := &devCredentials{id: cfg.RootAccessKeyID, secret: cfg.RootSecretAccessKey}
		region, endpoints, err := startDevRegion(ctx, rc, n, log, creds)
		if err != nil || region == nil {
			return err
		}
		all = append(all, region)
		firstAddrs = append(firstAddrs, region.Node(0).Addr())
		fmt.Fprintf(&banner, "\nRegion %s (data %s):\n%s%s\n", name, rc.DataDir, endpoints, creds.String())
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if err := devPair(ctx, firstAddrs[i], firstAddrs[j]); err != nil {
				return fmt.Errorf("pair %s with %s: %w", names[i], names[j], err)
			}
		}
	}
	fmt.Fprintf(stdout, devRegionsBanner, len(names), n, cfg.AccountID, banner.String(), cfg.DataDir, kept,
		firstAddrs[0], names[1], firstAddrs[1], firstAddrs[0])
	<-ctx.Done()
	return nil
}

const devRegionsBanner = `
Coffer dev: %d regions of %d nodes, paired, account %s.
%s
  Data:           %s (%s)

Try it from another terminal:
  export COFFER_ENDPOINT=%s
  go run ./cmd/coffer secrets create demo/db --value 's3cr3t' --replica-region %s
  COFFER_ENDPOINT=%s go run ./cmd/coffer secrets get demo/db
  go run ./cmd/coffer region list
  (endpoint %s is the first region's first node)

Press Ctrl-C to stop.
`

// devPair pairs the regions served at addresses a and b (dev nodes take
// calls without credentials).
func devPair(ctx context.Context, a, b string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ca, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer ca.Close()
	cb, err := grpc.NewClient(b, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cb.Close()
	return pairRegions(ctx, cofferv1.NewRegionServiceClient(ca), cofferv1.NewRegionServiceClient(cb))
}

// pairRegions gives a's offer to b and b's answer to a, each pinned by the
// fingerprint of the CA it names: in-process, on loopback, the offers
// cannot have been swapped, so the fingerprints come from them.
func pairRegions(ctx context.Context, a, b cofferv1.RegionServiceClient) error {
	offer, err := a.GetPairingOffer(ctx, &cofferv1.GetPairingOfferRequest{})
	if err != nil {
		return err
	}
	fpA, err := server.CAFingerprint(offer.GetOffer().GetCaPem())
	if err != nil {
		return fmt.Errorf("CA of %s: %w", offer.GetOffer().GetRegion(), err)
	}
	ans, err := b.PairRegion(ctx, &cofferv1.PairRegionRequest{Peer: offer.GetOffer(), PeerCaSha256: fpA})
	if err != nil {
		return err
	}
	fpB, err := server.CAFingerprint(ans.GetOffer().GetCaPem())
	if err != nil {
		return fmt.Errorf("CA of %s: %w", ans.GetOffer().GetRegion(), err)
	}
	_, err = a.PairRegion(ctx, &cofferv1.PairRegionRequest{Peer: ans.GetOffer(), PeerCaSha256: fpB})
	return err
}
