package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
)

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs a node until ctx ends, then stops it cleanly. onReady is called
// once the node serves requests.
func serve(ctx context.Context, cfg Config, log *slog.Logger, onReady func(addr string)) error {
	root, err := kms.FileSeal{Path: cfg.Seal.KeyFile}.RootKey()
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unseal: no root key at %s; create one with `cofferd keygen %s` (and back it up): %w", cfg.Seal.KeyFile, cfg.Seal.KeyFile, err)
	}
	if err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	store, err := storage.Open(filepath.Join(cfg.DataDir, "state.db"))
	if err != nil {
		return err
	}
	defer store.Close()

	rn, err := replication.Start(cfg.raftConfig(log), store)
	if err != nil {
		return err
	}
	defer func() {
		if err := rn.Shutdown(); err != nil {
			log.Warn("raft shutdown", "err", err)
		}
	}()

	svc, err := server.New(cfg.serviceConfig(), rn, store, root, log)
	if err != nil {
		return err
	}
	clear(root)

	var opts []grpc.ServerOption
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("load TLS key pair: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	}
	gs, health := server.NewGRPCServer(svc, log, opts...)
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.GRPCAddr, err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	defer func() {
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			gs.Stop()
		}
	}()

	if err := waitReady(ctx, rn, svc); err != nil {
		return err
	}
	server.SetServing(health, true)
	log.Info("cofferd ready", "node_id", cfg.NodeID, "region", cfg.Region, "grpc_addr", lis.Addr().String(), "applied_index", store.AppliedIndex())
	if onReady != nil {
		onReady(lis.Addr().String())
	}

	bg, stopBG := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(bg); close(done) }()
	defer func() { stopBG(); <-done }()

	select {
	case <-ctx.Done():
		log.Info("cofferd stopping")
		server.SetServing(health, false)
		return nil
	case err := <-serveErr:
		return fmt.Errorf("grpc server: %w", err)
	}
}

// waitReady waits for a leader and for the keyring, creating it on the
// leader of a new region.
func waitReady(ctx context.Context, rn *replication.Node, svc *server.Service) error {
	if err := rn.WaitLeader(ctx); err != nil {
		return err
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := svc.EnsureKeyring(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, replication.ErrNotLeader) && !errors.Is(err, replication.ErrNoLeader) && !svcNotReady(err) {
			return fmt.Errorf("initialise keyring: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func svcNotReady(err error) bool {
	return server.AsAPIError(err).Type == server.TypeServiceUnavailable
}
