package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/test/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "compare" {
		return compare(args[1:], stdout)
	}
	cfg := load.DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Target, "target", cfg.Target, "system under test: coffer or etcd")
	endpoints := fs.String("endpoints", strings.Join(cfg.Endpoints, ","), "comma-separated host:port list; clients are spread round-robin over them")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent closed-loop clients")
	fs.IntVar(&cfg.ClientsPerConn, "clients-per-conn", cfg.ClientsPerConn, "clients sharing one connection to an endpoint")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured window (ignored with --ops)")
	fs.Int64Var(&cfg.Ops, "ops", 0, "stop after this many measured operations instead of after --duration")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured warmup before the window")
	fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "bytes per value written")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "distinct keys (secrets)")
	fs.StringVar(&cfg.Op, "op", cfg.Op, "put, get or mixed")
	fs.Float64Var(&cfg.ReadRatio, "read-ratio", cfg.ReadRatio, "share of gets in a mixed run, 0 to 1")
	fs.StringVar(&cfg.Consistency, "consistency", cfg.Consistency, "reads: linearizable or stale (Coffer: x-coffer-consistency; etcd: serializable)")
	fs.StringVar(&cfg.Prefix, "prefix", "", "key name prefix (default: one per writing Coffer run, a stable one otherwise)")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-operation timeout")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed for key choice (0: random)")
	waitReady := fs.Duration("wait-ready", 0, "first wait up to this long for every endpoint to serve requests")
	readyOnly := fs.Bool("ready-only", false, "with --wait-ready: exit once ready, without running a workload")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.Endpoints = splitList(*endpoints)
	// Credentials come from the environment, as for the coffer CLI, never
	// from flags that would show in the process list.
	cfg.AccessKeyID, cfg.SecretAccessKey = getenv("COFFER_ACCESS_KEY_ID"), getenv("COFFER_SECRET_ACCESS_KEY")
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *readyOnly && *waitReady <= 0 {
		return errors.New("--ready-only needs --wait-ready")
	}

	target, err := load.Open(cfg)
	if err != nil {
		return err
	}
	defer target.Close()
	if *waitReady > 0 {
		began := time.Now()
		if err := load.WaitReady(ctx, target, *waitReady); err != nil {
			return fmt.Errorf("%s: %w", cfg.Target, err)
		}
		fmt.Fprintf(stderr, "%s: %d endpoints ready after %s\n", cfg.Target, len(cfg.Endpoints), time.Since(began).Round(time.Millisecond))
		if *readyOnly {
			return nil
		}
	}
	report, err := load.Run(ctx, cfg, target, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return report.WriteJSON(stdout)
	}
	return report.WriteText(stdout)
}

func compare(paths []string, stdout io.Writer) error {
	if len(paths) == 0 {
		return errors.New("usage: bench compare REPORT.json...")
	}
	var reports []*load.Report
	for _, p := range paths {
		r, err := load.ReadReport(p)
		if err != nil {
			return err
		}
		reports = append(reports, r)
	}
	return load.Compare(stdout, reports)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
