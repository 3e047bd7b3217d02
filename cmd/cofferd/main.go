// Command cofferd is the Coffer daemon: one node of a region's Raft group,
// serving the Secrets Manager API over gRPC.
//
//	cofferd server --config /etc/coffer/cofferd.yaml
//	cofferd dev
//	cofferd keygen /etc/coffer/root.key
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const usage = `cofferd is the Coffer daemon.

Usage:
  cofferd server [--config FILE] [flags]   run a node (flags and COFFER_* env override the file)
  cofferd dev [flags]                      run a throw-away local node, no files needed
  cofferd keygen FILE                      write a new root key file (mode 0600) for the file seal
  cofferd operator init --data-dir DIR [--shares 5] [--threshold 3]
                                           make a Shamir seal: print the key shares, write DIR/seal.json
  cofferd operator init --data-dir DIR --seal pkcs11 --pkcs11-module LIB --pkcs11-token-label T
                                           make a PKCS#11 seal (PIN in $COFFER_SEAL_PKCS11_PIN; needs
                                           a cofferd built with -tags pkcs11)
  cofferd operator migrate-seal --data-dir DIR --from-key-file FILE --to shamir|pkcs11 [init's flags]
                                           move a file-sealed node's root key to a Shamir or PKCS#11
                                           seal (the same key: no data is rewritten)
  cofferd ca create DIR                    create a region's cluster CA and gossip key
  cofferd ca issue --ca-dir DIR --node-id ID [--host H]... --out-dir DIR
                                           issue a node's cluster certificate
  cofferd ca issue --api --ca-dir DIR --host H [--host H]... --out-dir DIR
                                           issue the API server certificate (TLS
                                           for the gRPC and AWS APIs)
  cofferd help                             show this help

Run "cofferd server -h" or "cofferd dev -h" for their flags.
`

// run is cofferd's main, returning the exit code: 0 after a clean stop, 1 on
// a failure, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "server":
		err = runServer(ctx, args[1:], stdout, stderr, getenv)
	case "dev":
		err = runDev(ctx, args[1:], stdout, stderr, getenv)
	case "keygen":
		err = runKeygen(args[1:], stdout)
	case "operator":
		err = runOperator(args[1:], stdout, stderr, getenv)
	case "ca":
		err = runCA(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cofferd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if ue, ok := err.(usageError); ok {
		if ue.err != nil {
			fmt.Fprintf(stderr, "cofferd: %v\n", ue.err)
			return 2
		}
		return 0 // -h
	}
	fmt.Fprintf(stderr, "cofferd: %v\n", err)
	return 1
}

// usageError marks a bad command line (or a -h, when err is nil).
type usageError struct{ err error }

func (u usageError) Error() string {
	if u.err == nil {
		return "help requested"
	}
	return u.err.Error()
}
