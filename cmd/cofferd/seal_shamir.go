package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/cofferhq/coffer/metrics"
	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage/kms"
)

// A node with seal.type shamir starts sealed: on its gRPC address it
// serves only health (NOT_SERVING) and the SealService, until `coffer
// operator unseal` has given it threshold shares that combine to the key
// seal.json's check names; then it stops that listener and starts as a
// node with that root key.

// sealedNode is the SealService of a node waiting for its shares.
type sealedNode struct {
	cofferv1.UnimplementedSealServiceServer
	desc  *sealFile
	check []byte
	log   *slog.Logger

	mu     sync.Mutex
	shares [][]byte
	root   []byte
	done   chan struct{}
}

func (s *sealedNode) status() (sealed bool, progress int32) {
	return s.root == nil, int32(len(s.shares))
}

// Unseal adds a share; at the threshold it combines them. A combination
// that is not the seal's root key discards every share entered, so a wrong
// one is not kept poisoning the next tries.
func (s *sealedNode) Unseal(_ context.Context, req *cofferv1.UnsealRequest) (*cofferv1.UnsealResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := func() *cofferv1.UnsealResponse {
		sealed, progress := s.status()
		return &cofferv1.UnsealResponse{Sealed: sealed, Threshold: int32(s.desc.Threshold), Progress: progress}
	}
	if s.root != nil {
		return resp(), nil
	}
	if req.GetDiscardShares() {
		s.clearShares()
		return resp(), nil
	}
	share, err := base64.StdEncoding.DecodeString(req.GetShare())
	if err != nil || len(share) != 33 {
		return nil, status.Error(codes.InvalidArgument, "the share is not a key share printed by cofferd operator init")
	}
	for _, have := range s.shares {
		if have[0] == share[0] {
			return nil, status.Error(codes.InvalidArgument, "this share was already entered")
		}
	}
	s.shares = append(s.shares, share)
	if len(s.shares) < s.desc.Threshold {
		return resp(), nil
	}
	root, err := kms.CombineRootKey(s.shares, s.check)
	s.clearShares()
	if err != nil {
		s.log.Warn("unseal refused: the shares entered do not combine to this seal's root key; enter them again")
		return nil, status.Error(codes.PermissionDenied, "the shares do not combine to this seal's root key: one of them is wrong; all were discarded, enter them again")
	}
	s.root = root
	close(s.done)
	return resp(), nil
}

func (s *sealedNode) clearShares() {
	for _, sh := range s.shares {
		clear(sh)
	}
	s.shares = nil
}

// SealStatus implements the SealService.
func (s *sealedNode) SealStatus(context.Context, *cofferv1.SealStatusRequest) (*cofferv1.SealStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sealed, progress := s.status()
	return &cofferv1.SealStatusResponse{Sealed: sealed, Threshold: int32(s.desc.Threshold), Progress: progress,
		Shares: int32(s.desc.Shares), SealType: "shamir"}, nil
}

// awaitUnseal serves health (NOT_SERVING) and the SealService on the gRPC
// address, and the sealed metrics and health endpoints on the metrics
// address (sealedOps), until the shares give the root key, and returns it;
// both listeners are closed before it returns, so the node can take the
// addresses.
func awaitUnseal(ctx context.Context, dataDir string, opts node.Options, log *slog.Logger) ([]byte, error) {
	desc, check, err := readSealFile(dataDir)
	if err != nil {
		return nil, err
	}
	if desc.Type != "shamir" {
		return nil, fmt.Errorf("seal: seal.type is shamir but %s describes a %s seal", filepath.Join(dataDir, sealFileName), desc.Type)
	}
	sealed := &sealedNode{desc: desc, check: check, log: log, done: make(chan struct{})}
	ops, err := startSealedOps(opts, sealed.metrics, log)
	if err != nil {
		return nil, err
	}
	defer ops.stop()
	lis, err := net.Listen("tcp", opts.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("sealed: listen on %s: %w", opts.GRPCAddr, err)
	}
	var gopts []grpc.ServerOption
	if opts.GRPCTLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.GRPCTLS)))
	}
	srv := grpc.NewServer(gopts...)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	cofferv1.RegisterSealServiceServer(srv, sealed)
	go func() { _ = srv.Serve(lis) }()
	log.Info("sealed: waiting for key shares (coffer operator unseal)", "addr", lis.Addr().String(), "threshold", desc.Threshold)
	select {
	case <-ctx.Done():
		srv.Stop()
		return nil, ctx.Err()
	case <-sealed.done:
	}
	srv.GracefulStop()
	log.Info("unsealed: the shares gave the root key")
	sealed.mu.Lock()
	defer sealed.mu.Unlock()
	root := sealed.root
	sealed.root = []byte{} // not sealed, and no copy left here
	return root, nil
}

// metrics is the seal's state for a scrape.
func (s *sealedNode) metrics() metrics.SealState {
	s.mu.Lock()
	defer s.mu.Unlock()
	sealed, progress := s.status()
	return metrics.SealState{Type: "shamir", Sealed: sealed, Progress: int(progress), Threshold: s.desc.Threshold}
}
