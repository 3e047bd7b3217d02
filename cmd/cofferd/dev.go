package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/storage/kms"
)

// runDev starts a single throw-away node: a temporary data directory and
// root key, gRPC on 127.0.0.1:7400, everything removed on Ctrl-C.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	base := defaultConfig()
	base.NodeID = "dev-1"
	base.DataDir = ""
	base.Seal.KeyFile = ""
	base.Raft.Bootstrap = true
	base.LogLevel = "warn"

	cfg, err := parseDevConfig(base, args, stderr, getenv)
	if err != nil {
		return err
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
	if cfg.Seal.KeyFile == "" {
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
	return serve(ctx, cfg, log, func(addr string) {
		kept := "deleted when cofferd stops"
		if !temporary {
			kept = "kept"
		}
		fmt.Fprintf(stdout, `
Coffer dev node is running: one node, region %s, account %s.

  gRPC endpoint:  %s   (plaintext; grpcurl -plaintext %s list)
  Data:           %s (%s)
  Root key:       %s
  Credentials:    none needed in dev mode

Try it from another terminal:
  export COFFER_ENDPOINT=%s
  go run ./cmd/coffer secrets create demo/db-password --value 's3cr3t'
  go run ./cmd/coffer secrets get demo/db-password
  go run ./cmd/coffer secrets list

Press Ctrl-C to stop.
`, cfg.Region, cfg.AccountID, addr, addr, cfg.DataDir, kept, cfg.Seal.KeyFile, addr)
	})
}

func parseDevConfig(base Config, args []string, stderr io.Writer, getenv func(string) string) (Config, error) {
	// Validation waits until the data dir and key file are filled in.
	cfg := base
	cfg.DataDir = "pending"
	cfg.Seal.KeyFile = "pending"
	parsed, err := parseConfig("dev", cfg, args, stderr, getenv)
	if err != nil {
		return Config{}, err
	}
	if parsed.DataDir == "pending" {
		parsed.DataDir = ""
	}
	if parsed.Seal.KeyFile == "pending" {
		parsed.Seal.KeyFile = ""
	}
	return parsed, nil
}
