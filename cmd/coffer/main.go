// Command coffer is the command-line client for Coffer, a self-hosted secrets
// manager compatible with AWS Secrets Manager. Each "coffer secrets" command
// calls one RPC of Coffer's native gRPC API (coffer.v1.SecretsManagerService),
// and each "coffer cluster" command one of coffer.v1.AdminService, and prints
// the response as aligned text for people or, with -o json, as protobuf JSON
// for scripts. It never prints a stored secret's value except from
// "coffer secrets get".
//
// The exit status is part of the interface: scripts can tell "not found" (3)
// from "already exists" (4), a rejected request (5), an unreachable server (6)
// and a refused caller (7) without reading stderr. docs/CLI.md is the manual.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit status. It reads
// the COFFER_* environment variables; everything else comes from its arguments.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	inv := &invocation{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	defer inv.close()
	opts, err := optionsFromEnv(os.LookupEnv)
	if err != nil {
		return inv.report(err)
	}
	inv.opts = opts
	return inv.report(commandTree().execute(inv, args))
}
