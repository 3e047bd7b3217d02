package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/storage/kms"
)

func parseConfig(name string, base Config, args []string, stderr io.Writer, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet("cofferd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(fs, base, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return Config{}, usageError{}
	}
	var ve interface{ Unwrap() []error }
	if err != nil && !errors.As(err, &ve) {
		return Config{}, usageError{err}
	}
	if err != nil {
		return Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func runServer(ctx context.Context, args []string, _, stderr io.Writer, getenv func(string) string) error {
	cfg, err := parseConfig("server", defaultConfig(), args, stderr, getenv)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, newLogger(cfg, stderr), nil)
}

func runKeygen(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError{errors.New("usage: cofferd keygen FILE")}
	}
	if err := os.MkdirAll(filepath.Dir(args[0]), 0o700); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := kms.GenerateKeyFile(args[0]); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(stdout, "wrote a new root key to %s (mode 0600); keep a copy somewhere safe: without it the data cannot be decrypted\n", args[0])
	return nil
}
