package node_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

func TestCheckListener(t *testing.T) {
	for _, c := range []struct {
		addr            string
		tls, insecure   bool
		wantRefused     bool
		wantErrContains string
	}{
		{addr: "127.0.0.1:7400"},
		{addr: "127.9.9.9:7400"},
		{addr: "[::1]:7400"},
		{addr: "localhost:7400"},
		{addr: "LOCALHOST:0"},
		{addr: "0.0.0.0:7400", wantRefused: true},
		{addr: "[::]:7400", wantRefused: true},
		{addr: ":7400", wantRefused: true},
		{addr: "10.0.0.11:7400", wantRefused: true},
		{addr: "coffer.example.com:7400", wantRefused: true},
		{addr: "0.0.0.0:7400", tls: true},
		{addr: "0.0.0.0:7400", insecure: true},
		{addr: "no-port", wantErrContains: "missing port"},
	} {
		err := node.CheckListener("gRPC", c.addr, c.tls, c.insecure)
		switch {
		case c.wantErrContains != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErrContains) {
				t.Errorf("%s: %v, want an error mentioning %q", c.addr, err, c.wantErrContains)
			}
		case c.wantRefused != errors.Is(err, node.ErrPlaintextListener):
			t.Errorf("%s tls=%v insecure=%v: %v", c.addr, c.tls, c.insecure, err)
		}
	}
}

// lockedBuffer collects a node's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// node.Start refuses a plaintext API on every interface; with
// InsecurePlaintext it starts and says so in its log, again and again.
func TestPlaintextOffLoopback(t *testing.T) {
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	opts.GRPCAddr = "0.0.0.0:0"
	if _, err := node.Start(opts); !errors.Is(err, node.ErrPlaintextListener) {
		t.Fatalf("Start on 0.0.0.0 in plaintext: %v, want ErrPlaintextListener", err)
	}
	var logs lockedBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	opts.InsecurePlaintext = true
	opts.PlaintextWarnEvery = 20 * time.Millisecond
	n, _ := startReady(t, opts)
	defer n.Stop()
	wait.True(t, time.Minute, "the plaintext warning, repeated", func() bool {
		return strings.Count(logs.String(), "insecure_plaintext: API listeners serve plaintext off loopback") >= 3
	})
}

// clustertestOptions are a single node's options with the root key the
// access tests use.
func clustertestOptions(t *testing.T) node.Options {
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	opts.RootAccessKeyID, opts.RootSecretAccessKey = rootID, rootSecret
	return opts
}
