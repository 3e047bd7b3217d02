package clustertest

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/test/testkit"
)

// SingleNodeOptions are the options of node "n1", a region on its own in
// dir: it bootstraps on a free loopback cluster port with a certificate
// from a CA of its own, with a random root key and quick elections, and
// logs nothing. Its gRPC API listens on a port the kernel picks. Tests
// change what they need (audit log, AWS listener, rotation) before
// node.Start.
func SingleNodeOptions(tb testing.TB, dir string) node.Options {
	tb.Helper()
	ca, err := replication.NewCA("test", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	tlsMat, _, _, err := ca.IssueNode("n1", []string{testkit.Host}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return node.Options{
		DataDir: dir, GRPCAddr: net.JoinHostPort(testkit.Host, "0"), Service: server.DefaultConfig(), RootKey: randomBytes(tb, 32),
		Raft: replication.Config{
			NodeID: "n1", BindAddr: testkit.FreeAddr(tb), Bootstrap: true, TLS: tlsMat,
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 150 * time.Millisecond,
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}
